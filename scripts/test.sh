#!/usr/bin/env bash
# The one test command (README and CI): installs what is missing, prepares PostgreSQL and RabbitMQ,
# typechecks, then runs every suite against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash scripts/setup-services.sh
npx tsc -p tsconfig.json
# Suites one file at a time: the integration ones start processes and kill them, and the machine has two cores.
node --import tsx --test --test-concurrency=1 test/unit/*.test.ts test/conformance/*.test.ts test/integration/*.test.ts
# The replication suite again, deployed with least privilege (README, Security model): three PostgreSQL
# roles without superuser, and a RabbitMQ user per site that may declare nothing.
TEST_SITESYNC_LEAST_PRIVILEGE=1 node --import tsx --test --test-concurrency=1 test/integration/replication.test.ts
# The PostgreSQL integration suites again on PostgreSQL 17 (the embedded binaries from npm, a server of this
# run's own): what changed in 16 (origins moved on abort, origin 'none') was found this way.
pg17_log=$(mktemp)
node --import tsx scripts/postgres-17.ts --print-url-only >"$pg17_log" 2>&1 &
pg17_pid=$!
trap 'kill $pg17_pid 2>/dev/null || true; wait $pg17_pid 2>/dev/null || true; rm -f "$pg17_log"' EXIT
for _ in $(seq 1 120); do grep -q '^postgres://' "$pg17_log" && break; kill -0 $pg17_pid 2>/dev/null || { cat "$pg17_log"; exit 1; }; sleep 0.5; done
TEST_SITESYNC_POSTGRES=$(grep -m1 '^postgres://' "$pg17_log") node --import tsx --test --test-concurrency=1 \
  test/integration/replication.test.ts test/integration/mesh.test.ts test/integration/type-fidelity.test.ts \
  test/integration/copy-apply.test.ts test/integration/crash-recovery.test.ts test/integration/schema-drift.test.ts \
  test/integration/encoding.test.ts test/integration/trust.test.ts test/integration/key-types.test.ts \
  test/integration/capture-kinds.test.ts

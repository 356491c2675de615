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

#!/usr/bin/env bash
# The demo: prepares this machine's PostgreSQL and RabbitMQ, creates two sites (demo_paris and
# demo_london, two databases on the local server), starts one `sitesync run` per site, writes at each
# and shows the other receive it. `npm run demo -- mesh` does the same with three sites (adding
# demo_madrid) that all write. The sites keep running afterwards so you can try your own writes;
# `npm run demo -- stop` stops them. Running it again starts from a clean slate.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=.demo
SITES=(paris london madrid) # every site a demo may have run, so that stop and clean-up find them all
PSQL=(psql -X -q -h 127.0.0.1 -U postgres)
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_sites() {
  for site in "${SITES[@]}"; do
    if [[ -f $DEMO/$site.pid ]] && kill -0 "$(cat "$DEMO/$site.pid")" 2>/dev/null; then
      kill -TERM "$(cat "$DEMO/$site.pid")"
      for _ in $(seq 1 50); do kill -0 "$(cat "$DEMO/$site.pid")" 2>/dev/null || break; sleep 0.2; done
      echo "stopped site $site"
    fi
    rm -f "$DEMO/$site.pid"
  done
}

if [[ ${1:-} == stop ]]; then
  stop_sites
  exit 0
fi

[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash scripts/setup-services.sh
mkdir -p "$DEMO"
stop_sites
if [[ ${1:-} == mesh ]]; then SITES=(paris london madrid); else SITES=(paris london); fi

say "Creating ${#SITES[@]} sites on this machine: $(printf 'demo_%s ' "${SITES[@]}")"
for site in "${SITES[@]}"; do
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS demo_$site WITH (FORCE)" 2>/dev/null
  "${PSQL[@]}" -d postgres -tAc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'sitesync_$site'" >/dev/null
  # Exactly the demo's own origins: other sitesync deployments may share this server.
  "${PSQL[@]}" -d postgres -tAc "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname ~ '^sitesync_(paris|london|madrid)_to_$site\$'" >/dev/null
  rabbitmqctl -q delete_queue "SITE_${site^^}" >/dev/null 2>&1 || true
  rabbitmqctl -q delete_queue "SITE_${site^^}.parked" >/dev/null 2>&1 || true
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE demo_$site"
  # The same application schema at every site: sitesync changes nothing in it.
  "${PSQL[@]}" -d "demo_$site" -c "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text, balance numeric(12,2), updated_at timestamptz DEFAULT now())"
done

{
  echo "broker:"
  echo "  url: amqp://guest:guest@127.0.0.1:5672/"
  echo "sites:"
  for site in "${SITES[@]}"; do
    echo "  $site:"
    echo "    postgres: postgres://postgres@127.0.0.1:5432/demo_$site"
  done
} >"$DEMO/sitesync.yml"
echo "configuration: $DEMO/sitesync.yml"

say "Starting one sitesync process per site (logs in $DEMO/<site>.log)"
port=9464
for site in "${SITES[@]}"; do
  nohup node bin/sitesync.js run --config "$DEMO/sitesync.yml" --site "$site" --metrics-port "$port" >"$DEMO/$site.log" 2>&1 &
  echo $! >"$DEMO/$site.pid"
  echo "site $site: pid $(cat "$DEMO/$site.pid"), metrics on http://127.0.0.1:$port/metrics"
  port=$((port + 1))
done
for site in "${SITES[@]}"; do
  for _ in $(seq 1 100); do
    grep -q '"capture started"' "$DEMO/$site.log" && grep -q '"applying"' "$DEMO/$site.log" && break
    kill -0 "$(cat "$DEMO/$site.pid")" 2>/dev/null || { echo "site $site failed to start:"; tail -n 5 "$DEMO/$site.log"; exit 1; }
    sleep 0.2
  done
done

wait_for() { # database, query, expected output
  for _ in $(seq 1 100); do
    [[ $("${PSQL[@]}" -d "$1" -tAc "$2") == "$3" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting at $1 for: $2" >&2
  exit 1
}

say "Writing at paris: two customers"
"${PSQL[@]}" -d demo_paris -c "INSERT INTO customers (id, name, city, balance) VALUES (1, 'Amélie', 'Paris', 120.50), (2, 'Bastien', 'Lyon', 0)"
wait_for demo_london "SELECT count(*) FROM customers" 2
say "Writing at london: one customer, and a change to one of paris's"
"${PSQL[@]}" -d demo_london -c "INSERT INTO customers (id, name, city, balance) VALUES (3, 'Oliver', 'London', 99.99)" -c "UPDATE customers SET balance = balance + 10 WHERE id = 1"
wait_for demo_paris "SELECT balance FROM customers WHERE id = 1" 130.50
if [[ ${#SITES[@]} == 3 ]]; then
  say "Writing at madrid, and at all three sites at once"
  "${PSQL[@]}" -d demo_madrid -c "INSERT INTO customers (id, name, city, balance) VALUES (4, 'Lucía', 'Madrid', 42)"
  writers=()
  for i in "${!SITES[@]}"; do
    site=${SITES[$i]}
    "${PSQL[@]}" -d "demo_$site" -c "INSERT INTO customers (id, name, city) SELECT 100 * g + $i, '$site ' || g, '$site' FROM generate_series(1, 20) g" &
    writers+=($!)
  done
  wait "${writers[@]}" # only the writers: the sites started above are children of this shell too
  for site in "${SITES[@]}"; do wait_for "demo_$site" "SELECT count(*) FROM customers" 64; done
fi

for site in "${SITES[@]}"; do
  say "customers at $site"
  "${PSQL[@]}" -d "demo_$site" -c "SELECT id, name, city, balance, updated_at FROM customers ORDER BY id"
done

say "sitesync status"
node bin/sitesync.js status --config "$DEMO/sitesync.yml"

cat <<EOF

The sites are still running. Try your own writes, at any site:
  psql -h 127.0.0.1 -U postgres -d demo_paris  -c "INSERT INTO customers (id, name) VALUES (10, 'you')"
  psql -h 127.0.0.1 -U postgres -d demo_london -c "SELECT * FROM customers"
Conflicts (the same row changed at two sites before either heard of the other) are logged at each site:
  psql -h 127.0.0.1 -U postgres -d demo_london -c "SELECT * FROM sitesync.conflicts"
RabbitMQ's management UI (guest/guest): http://127.0.0.1:15672 — queues SITE_<SITE>, sitesync.archive
Stop the sites with: npm run demo -- stop
EOF

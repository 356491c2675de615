#!/usr/bin/env bash
# The demo: prepares this machine's PostgreSQL and RabbitMQ, creates two sites (demo_paris and
# demo_london, two databases on the local server), starts one `sitesync run` per site, writes at each
# and shows the other receive it. `npm run demo -- mesh` does the same with three sites (adding
# demo_madrid) that all write. `npm run demo -- mariadb` makes madrid a MariaDB site instead of london:
# it starts a private MariaDB server for the demo (.demo/mariadb, port 3307, binary log on; never the
# machine's own MariaDB) and replicates between paris (PostgreSQL) and madrid (MariaDB) both ways. The
# sites keep running afterwards so you can try your own writes; `npm run demo -- stop` stops them (and
# the demo's MariaDB). `npm run demo -- analytics` adds a third site, warehouse, whose database is a DuckDB
# file (.demo/warehouse.duckdb): it only receives, keeps every change as history beside the current
# state, and is queried with `sitesync query` while it runs. `npm run demo -- join` starts paris and
# london, gives paris 20,000 customers, and adds a third site, madrid, with `sitesync join` while paris
# and london keep writing: no process restarts, nobody pauses. Running it again starts from a clean slate.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:-}
case $MODE in
  '' | mesh | mariadb | analytics | join | stop) ;;
  *) echo "usage: npm run demo [-- mesh | mariadb | analytics | join | stop]" >&2; exit 2 ;;
esac

DEMO=.demo
SITES=(paris london madrid warehouse) # every site a demo may have run, so that stop and clean-up find them all
PSQL=(psql -X -q -h 127.0.0.1 -U postgres)
# The demo's own MariaDB server: its own data folder, socket, pid file and port, so that it never touches
# the machine's MariaDB (3306, /run/mysqld). Root has no password, over TCP on 127.0.0.1 only.
MARIADB_DIR=$PWD/$DEMO/mariadb
MARIADB_PORT=3307
MARIADB=(mariadb -h 127.0.0.1 -P "$MARIADB_PORT" -u root)
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

# The pid of the demo's MariaDB server, if it runs (checked to be a mariadbd on the demo's own folder, so
# that a stale pid file never makes us signal something else).
mariadb_pid() {
  local pid
  pid=$(cat "$MARIADB_DIR/mariadb.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--datadir=$MARIADB_DIR/data" || return 1
  echo "$pid"
}

stop_mariadb() { # a clean shutdown (SIGTERM), waiting for it; killed if it takes more than 60 s
  local pid
  pid=$(mariadb_pid) || return 0
  kill -TERM "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; sleep 0.5; fi
  echo "stopped the demo's MariaDB (pid $pid)"
}

start_mariadb() { # a fresh server in $MARIADB_DIR, in the background
  rm -rf "$MARIADB_DIR"
  mkdir -p "$MARIADB_DIR"
  if (echo >"/dev/tcp/127.0.0.1/$MARIADB_PORT") 2>/dev/null; then
    echo "port $MARIADB_PORT is taken by something that is not the demo's MariaDB; free it and run the demo again" >&2
    exit 1
  fi
  local user=() small=(--innodb-log-file-size=8M --innodb-data-file-path=ibdata1:12M:autoextend)
  [[ $(id -u) == 0 ]] && user=(--user=root) # MariaDB runs as root only when told so
  mariadb-install-db --no-defaults --datadir="$MARIADB_DIR/data" "${user[@]}" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve "${small[@]}" >"$MARIADB_DIR/install.log" 2>&1 ||
    { echo "mariadb-install-db failed:"; tail -n 20 "$MARIADB_DIR/install.log"; exit 1; }
  # The binary log as sitesync's capture reads it: row format, full row images, full row metadata.
  nohup /usr/sbin/mariadbd --no-defaults --datadir="$MARIADB_DIR/data" "${user[@]}" \
    --port="$MARIADB_PORT" --socket="$MARIADB_DIR/mariadb.sock" --pid-file="$MARIADB_DIR/mariadb.pid" \
    --log-error="$MARIADB_DIR/error.log" --bind-address=127.0.0.1 --skip-networking=0 --skip-name-resolve \
    --server-id=1 --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --innodb-buffer-pool-size=32M "${small[@]}" --performance-schema=0 --max-connections=100 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do
    "${MARIADB[@]}" -e 'SELECT 1' >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { echo "the demo's MariaDB failed to start:"; tail -n 20 "$MARIADB_DIR/error.log"; exit 1; }
    sleep 0.1
  done
  "${MARIADB[@]}" -e 'SELECT 1' >/dev/null 2>&1 || { echo "the demo's MariaDB did not answer on port $MARIADB_PORT within 30 s; see $MARIADB_DIR/error.log"; exit 1; }
  echo "MariaDB $("${MARIADB[@]}" -N -B -e 'SELECT VERSION()') on 127.0.0.1:$MARIADB_PORT (pid $pid, data and error log in $DEMO/mariadb)"
}

if [[ $MODE == stop ]]; then
  stop_sites
  stop_mariadb
  exit 0
fi

[[ -d node_modules ]] || npm ci --no-audit --no-fund
bash scripts/setup-services.sh
mkdir -p "$DEMO"
stop_sites
stop_mariadb
case $MODE in
  mesh) SITES=(paris london madrid) ;;
  mariadb) SITES=(paris madrid) ;;
  *) SITES=(paris london) ;;
esac
# The sites a process runs for: the databases above, and in the analytics demo the DuckDB warehouse.
RUNS=("${SITES[@]}")
[[ $MODE == analytics ]] && RUNS+=(warehouse)
kind_of() { if [[ $MODE == mariadb && $1 == madrid ]]; then echo mariadb; else echo postgres; fi; }
where_is() { if [[ $(kind_of "$1") == mariadb ]]; then echo "MariaDB 127.0.0.1:$MARIADB_PORT, database public"; else echo "PostgreSQL demo_$1"; fi; }

# Clean up what any earlier demo left (every demo site's database, slot, origins and queues, whichever
# mode made them: a slot left behind would keep WAL for ever), then create this demo's sites.
for site in paris london madrid; do
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS demo_$site WITH (FORCE)" 2>/dev/null
  "${PSQL[@]}" -d postgres -tAc "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'sitesync_$site'" >/dev/null
  # Exactly the demo's own origins: other sitesync deployments may share this server.
  "${PSQL[@]}" -d postgres -tAc "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin WHERE roname ~ '^sitesync_(paris|london|madrid)_to_$site\$'" >/dev/null
  rabbitmqctl -q delete_queue "SITE_${site^^}" >/dev/null 2>&1 || true
  rabbitmqctl -q delete_queue "SITE_${site^^}.parked" >/dev/null 2>&1 || true
done
rm -rf "$MARIADB_DIR" # the demo's MariaDB, stopped above: a mariadb demo starts a fresh one below
rm -f "$DEMO"/warehouse.duckdb* # the analytics demo's DuckDB file, its write-ahead log and socket
rabbitmqctl -q delete_queue SITE_WAREHOUSE >/dev/null 2>&1 || true
rabbitmqctl -q delete_queue SITE_WAREHOUSE.parked >/dev/null 2>&1 || true

say "Creating ${#SITES[@]} sites on this machine: $(for s in "${SITES[@]}"; do printf '%s (%s)  ' "$s" "$(where_is "$s")"; done)"
[[ $MODE == mariadb ]] && start_mariadb
for site in "${SITES[@]}"; do
  # The same application schema at every site: sitesync changes nothing in it.
  if [[ $(kind_of "$site") == mariadb ]]; then
    # A MariaDB site's tables are database.table: PostgreSQL's public.customers is database public, table
    # customers, in MariaDB's types (numeric -> decimal, timestamptz -> TIMESTAMP, kept in UTC).
    "${MARIADB[@]}" -e "CREATE DATABASE public CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    "${MARIADB[@]}" public -e "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text, balance decimal(12,2), updated_at timestamp(6) NULL DEFAULT CURRENT_TIMESTAMP(6))"
  else
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE demo_$site"
    "${PSQL[@]}" -d "demo_$site" -c "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text, balance numeric(12,2), updated_at timestamptz DEFAULT now())"
  fi
done

{
  echo "broker:"
  echo "  url: amqp://guest:guest@127.0.0.1:5672/"
  echo "sites:"
  for site in "${SITES[@]}"; do
    echo "  $site:"
    if [[ $(kind_of "$site") == mariadb ]]; then
      echo "    database: { kind: mariadb, url: mariadb://root@127.0.0.1:$MARIADB_PORT/ }"
    else
      echo "    postgres: postgres://postgres@127.0.0.1:5432/demo_$site"
    fi
  done
  if [[ $MODE == analytics ]]; then
    echo "  warehouse:"
    echo "    database: { kind: duckdb, url: duckdb://$PWD/$DEMO/warehouse.duckdb }"
    echo "    capture: false"
  fi
} >"$DEMO/sitesync.yml"
echo "configuration: $DEMO/sitesync.yml"

say "Starting one sitesync process per site (logs in $DEMO/<site>.log)"
port=9464
for site in "${RUNS[@]}"; do
  nohup node bin/sitesync.js run --config "$DEMO/sitesync.yml" --site "$site" --metrics-port "$port" >"$DEMO/$site.log" 2>&1 &
  echo $! >"$DEMO/$site.pid"
  echo "site $site: pid $(cat "$DEMO/$site.pid"), metrics on http://127.0.0.1:$port/metrics"
  port=$((port + 1))
done
for site in "${RUNS[@]}"; do
  for _ in $(seq 1 100); do
    grep -qE '"capture started"|"capture off:' "$DEMO/$site.log" && grep -q '"applying"' "$DEMO/$site.log" && break
    kill -0 "$(cat "$DEMO/$site.pid")" 2>/dev/null || { echo "site $site failed to start:"; tail -n 5 "$DEMO/$site.log"; exit 1; }
    sleep 0.2
  done
done

sql_at() { # site, statements...: run at that site's database, whichever it is
  local site=$1; shift
  if [[ $(kind_of "$site") == mariadb ]]; then
    local statement
    for statement in "$@"; do "${MARIADB[@]}" public -e "$statement"; done
  else
    local args=() statement
    for statement in "$@"; do args+=(-c "$statement"); done
    "${PSQL[@]}" -d "demo_$site" "${args[@]}"
  fi
}
value_at() { # site, query: its one value, unadorned
  if [[ $(kind_of "$1") == mariadb ]]; then "${MARIADB[@]}" public -N -B -e "$2"; else "${PSQL[@]}" -d "demo_$1" -tAc "$2"; fi
}
wait_for() { # site, query, expected output
  for _ in $(seq 1 100); do
    [[ $(value_at "$1" "$2" 2>/dev/null) == "$3" ]] && return 0
    sleep 0.1
  done
  echo "timed out waiting at $1 for: $2 = $3 (it says: $(value_at "$1" "$2" 2>&1)); see $DEMO/*.log" >&2
  exit 1
}

second=${SITES[1]}
case $second in
  london) newcomer="(3, 'Oliver', 'London', 99.99)" ;;
  madrid) newcomer="(3, 'Lucía', 'Madrid', 99.99)" ;;
esac
say "Writing at paris: two customers"
sql_at paris "INSERT INTO customers (id, name, city, balance) VALUES (1, 'Amélie', 'Paris', 120.50), (2, 'Bastien', 'Lyon', 0)"
wait_for "$second" "SELECT count(*) FROM customers" 2
say "Writing at $second: one customer, and a change to one of paris's"
sql_at "$second" "INSERT INTO customers (id, name, city, balance) VALUES $newcomer" "UPDATE customers SET balance = balance + 10 WHERE id = 1"
wait_for paris "SELECT balance FROM customers WHERE id = 1" 130.50
wait_for paris "SELECT count(*) FROM customers" 3
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
  for site in "${SITES[@]}"; do wait_for "$site" "SELECT count(*) FROM customers" 64; done
fi

if [[ $MODE == join ]]; then
  say "paris holds 20,000 customers more (london receives them through the stream)"
  sql_at paris "INSERT INTO customers (id, name, city, balance) SELECT g, 'customer ' || g, 'Paris', g % 1000 FROM generate_series(1000, 20999) g"
  wait_for london "SELECT count(*) FROM customers" 20003
  say "paris and london keep writing (a loop at each, in the background) while madrid joins"
  write_loop() { # site, first id: inserts and updates until .demo/writing goes
    local site=$1 id=$2
    while [[ -e $DEMO/writing ]]; do
      sql_at "$site" "INSERT INTO customers (id, name, city) VALUES ($id, '$site $id', '$site')" "UPDATE customers SET balance = balance + 1 WHERE id = $((1000 + RANDOM % 20000))" >/dev/null
      id=$((id + 1))
    done
  }
  touch "$DEMO/writing"
  write_loop paris 100000 & paris_writer=$!
  write_loop london 200000 & london_writer=$!
  say "Adding madrid: its database and table (empty), the configuration everywhere, a reload (SIGHUP) of the running processes"
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE demo_madrid"
  "${PSQL[@]}" -d demo_madrid -c "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text, balance numeric(12,2), updated_at timestamptz DEFAULT now())"
  printf '  madrid:\n    postgres: postgres://postgres@127.0.0.1:5432/demo_madrid\n' >>"$DEMO/sitesync.yml"
  kill -HUP "$(cat "$DEMO/paris.pid")" "$(cat "$DEMO/london.pid")"
  node bin/sitesync.js setup --config "$DEMO/sitesync.yml" >/dev/null
  say "sitesync join --site madrid --from paris, then madrid's process"
  node bin/sitesync.js join --config "$DEMO/sitesync.yml" --site madrid --from paris
  nohup node bin/sitesync.js run --config "$DEMO/sitesync.yml" --site madrid --metrics-port 9466 >"$DEMO/madrid.log" 2>&1 &
  echo $! >"$DEMO/madrid.pid"
  node bin/sitesync.js join --config "$DEMO/sitesync.yml" --site madrid --from paris --status
  sleep 2
  rm -f "$DEMO/writing"
  wait "$paris_writer" "$london_writer"
  SITES=(paris london madrid)
  for _ in $(seq 1 300); do # the last writes still travelling: until the three counts agree (60 s at most)
    counts=$(for site in "${SITES[@]}"; do value_at "$site" "SELECT count(*) FROM customers"; done | sort -u | wc -l)
    [[ $counts == 1 ]] && break
    sleep 0.2
  done
  say "Writes stopped: customers written at each site meanwhile, and rows at each site"
  for site in "${SITES[@]}"; do
    echo "$site: $(value_at "$site" "SELECT count(*) FILTER (WHERE id >= 100000 AND id < 200000) || ' by paris, ' || count(*) FILTER (WHERE id >= 200000) || ' by london, ' || count(*) || ' rows in all' FROM customers")"
  done
fi

for site in "${SITES[@]}"; do
  [[ $MODE == join ]] && break # 20,000 rows each: verify below compares them
  say "customers at $site ($(where_is "$site"))"
  if [[ $(kind_of "$site") == mariadb ]]; then
    # Shown in UTC, as PostgreSQL shows them here (TIMESTAMP is kept in UTC and shown in the session's zone).
    "${MARIADB[@]}" public -t -e "SET time_zone = '+00:00'; SELECT id, name, city, balance, updated_at FROM customers ORDER BY id"
  else
    "${PSQL[@]}" -d "demo_$site" -c "SELECT id, name, city, balance, updated_at FROM customers ORDER BY id"
  fi
done

if [[ $MODE == analytics ]]; then
  say "Deleting at london: customer 2 (the warehouse keeps it, flagged deleted, and its history)"
  sql_at london "DELETE FROM customers WHERE id = 2"
  query() { node bin/sitesync.js query --config "$DEMO/sitesync.yml" --site warehouse "$@"; }
  for _ in $(seq 1 100); do
    [[ $(query --json "SELECT count(*) AS n FROM public.customers__history" 2>/dev/null) == '{"n":5}' ]] && break
    sleep 0.2
  done
  say "The warehouse's history of public.customers: every change, from which site, when (sitesync query)"
  query "SELECT _sitesync_commit_time AS committed, _sitesync_site AS site, _sitesync_op AS op, id, name, city, balance FROM public.customers__history ORDER BY _sitesync_commit_micros, _sitesync_seq"
  say "Its current state: one row per customer, deleted ones flagged"
  query "SELECT id, name, city, balance, _sitesync_deleted AS deleted, _sitesync_site AS last_written_by FROM public.customers ORDER BY id"
fi

say "sitesync status"
node bin/sitesync.js status --config "$DEMO/sitesync.yml"

say "sitesync verify: the same rows at every site? (read at each site at one point in time, while they run)"
node bin/sitesync.js verify --config "$DEMO/sitesync.yml" --tables public.customers

if [[ $MODE == analytics ]]; then
  cat <<EOF

The sites are still running. Write at paris or london, and ask the warehouse (a DuckDB file that one
process holds: sitesync query goes through it, read-only):
  psql -h 127.0.0.1 -U postgres -d demo_paris -c "UPDATE customers SET city = 'Nice' WHERE id = 1"
  node bin/sitesync.js query --config $DEMO/sitesync.yml --site warehouse "SELECT * FROM public.customers__history ORDER BY _sitesync_commit_micros"
  node bin/sitesync.js query --config $DEMO/sitesync.yml --site warehouse --json "SELECT city, sum(balance) FROM public.customers WHERE NOT _sitesync_deleted GROUP BY city"
Once the sites are stopped (npm run demo -- stop), open the file with any DuckDB: $DEMO/warehouse.duckdb
EOF
elif [[ $MODE == mariadb ]]; then
  cat <<EOF

The sites are still running. Try your own writes, at either site:
  psql -h 127.0.0.1 -U postgres -d demo_paris -c "INSERT INTO customers (id, name) VALUES (10, 'you')"
  mariadb -h 127.0.0.1 -P $MARIADB_PORT -u root public -e "SELECT * FROM customers"
  mariadb -h 127.0.0.1 -P $MARIADB_PORT -u root public -e "UPDATE customers SET city = 'Sevilla' WHERE id = 10"
  psql -h 127.0.0.1 -U postgres -d demo_paris -c "SELECT * FROM customers"
madrid is the demo's own MariaDB server (data, binary log and error log in $DEMO/mariadb; the machine's
MariaDB on 3306 is not used); sitesync keeps its bookkeeping there in the database sitesync:
  mariadb -h 127.0.0.1 -P $MARIADB_PORT -u root -e "SELECT * FROM sitesync.apply_progress; SHOW BINARY LOGS"
Conflicts (the same row changed at both sites before either heard of the other) are resolved alike and
logged at both sites:
  psql -h 127.0.0.1 -U postgres -d demo_paris -c "SELECT * FROM sitesync.conflicts"
  mariadb -h 127.0.0.1 -P $MARIADB_PORT -u root -e "SELECT * FROM sitesync.conflicts"
RabbitMQ's management UI (guest/guest): http://127.0.0.1:15672 — queues SITE_<SITE>, sitesync.archive
Stop the sites and the demo's MariaDB with: npm run demo -- stop
EOF
else
  cat <<EOF

The sites are still running. Try your own writes, at any site:
  psql -h 127.0.0.1 -U postgres -d demo_paris  -c "INSERT INTO customers (id, name) VALUES (10, 'you')"
  psql -h 127.0.0.1 -U postgres -d demo_london -c "SELECT * FROM customers"
Conflicts (the same row changed at two sites before either heard of the other) are logged at each site:
  psql -h 127.0.0.1 -U postgres -d demo_london -c "SELECT * FROM sitesync.conflicts"
See the stream: every change as it is archived (keys only; --values for the values), where a transaction
went, and the web console (http://127.0.0.1:8099/):
  node bin/sitesync.js tail --config $DEMO/sitesync.yml --follow --pretty
  node bin/sitesync.js trace --config $DEMO/sitesync.yml <a transaction id tail printed>
  node bin/sitesync.js ui --config $DEMO/sitesync.yml
Compare the sites, repair a difference from paris, or send paris's whole table to the others again:
  node bin/sitesync.js verify --config $DEMO/sitesync.yml --tables public.customers [--repair]
  node bin/sitesync.js snapshot --config $DEMO/sitesync.yml --site paris --table public.customers --wait
RabbitMQ's management UI (guest/guest): http://127.0.0.1:15672 — queues SITE_<SITE>, sitesync.archive
Stop the sites with: npm run demo -- stop
EOF
fi

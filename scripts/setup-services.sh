#!/usr/bin/env bash
# Make this machine's PostgreSQL and RabbitMQ ready for sitesync. Safe to run any number of times:
# it changes only what differs and restarts PostgreSQL only when a setting needs it.
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER
say() { printf 'setup: %s\n' "$*"; }

psql_q() { psql -XAtq -d postgres -c "$1"; }

if ! psql_q 'select 1' >/dev/null 2>&1; then
  say "PostgreSQL is not answering at $PGHOST:$PGPORT; starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi

# name=value pairs sitesync needs; a value is raised, never lowered, for the numeric ones.
changed=0
ensure() {
  local name=$1 want=$2 have
  have=$(psql_q "select setting from pg_settings where name = '$name'")
  if [[ "$want" =~ ^[0-9]+$ && "$have" =~ ^[0-9]+$ ]]; then
    (( have >= want )) && return 0
  elif [[ "$have" == "$want" ]]; then
    return 0
  fi
  psql_q "alter system set $name = '$want'"
  say "$name: $have -> $want"
  changed=1
}
ensure wal_level logical
ensure max_replication_slots 32
ensure max_wal_senders 32
ensure track_commit_timestamp on

if [[ $changed == 1 ]] || [[ $(psql_q "select count(*) from pg_settings where pending_restart") != 0 ]]; then
  say "restarting PostgreSQL for the new settings"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main restart
  for _ in $(seq 1 30); do psql_q 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi
[[ $(psql_q 'show wal_level') == logical ]] || { say "wal_level is still not logical"; exit 1; }
say "PostgreSQL ready (wal_level=logical, track_commit_timestamp=on)"

if ! rabbitmqctl -q status >/dev/null 2>&1; then
  say "RabbitMQ is not running; starting it"
  rabbitmq-server -detached
fi
rabbitmqctl -q await_startup >/dev/null 2>&1 || rabbitmqctl wait --timeout 60 /var/lib/rabbitmq/mnesia/rabbit@$(hostname -s).pid >/dev/null 2>&1 || true
for plugin in rabbitmq_management rabbitmq_stream; do
  if ! rabbitmq-plugins -q list -e "^${plugin}\$" 2>/dev/null | grep -q "$plugin"; then
    rabbitmq-plugins -q enable "$plugin" >/dev/null
    say "enabled RabbitMQ plugin $plugin"
  fi
done
say "RabbitMQ ready (management on :15672, streams enabled)"

# The web console's end-to-end test drives Debian's Chromium (test/integration/console-browser.test.ts).
command -v chromium >/dev/null || { say "installing chromium for the console's browser test"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# MariaDB: the tests start private servers of their own (binary log on), from the machine's packages; the
# machine's own MariaDB service is never changed.
if [[ -x "${TEST_SITESYNC_MARIADBD:-/usr/sbin/mariadbd}" ]] && command -v "${TEST_SITESYNC_MARIADB_INSTALL_DB:-mariadb-install-db}" >/dev/null; then
  say "MariaDB server binaries present ($("${TEST_SITESYNC_MARIADBD:-/usr/sbin/mariadbd}" --version | awk '{print $3}'))"
else
  say "MariaDB server binaries missing: the MariaDB tests need them; install them with: apt-get install -y mariadb-server"
  exit 1
fi

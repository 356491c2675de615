#!/usr/bin/env bash
# Check that docker-compose.yml parses and validates with Debian's docker-compose (1.29.x).
# Installs that package first if no docker-compose command exists. No Docker engine is needed:
# `docker-compose config` only reads, interpolates and validates the file. Safe to run repeatedly.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
compose_file=docker-compose.yml
say() { printf 'validate-compose: %s\n' "$*"; }

if ! command -v docker-compose >/dev/null 2>&1; then
  if [[ $(id -u) != 0 ]]; then
    say "docker-compose is not installed; run this as root, or: sudo apt-get install docker-compose" >&2
    exit 1
  fi
  say "docker-compose not found; installing Debian's docker-compose package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null
  command -v docker-compose >/dev/null 2>&1 || { say "docker-compose still missing after install" >&2; exit 1; }
fi

[[ -f $compose_file ]] || { say "$compose_file not found in $(pwd)" >&2; exit 1; }

# Files the compose file bind-mounts: a missing one would make Docker create an empty directory.
for f in deploy/sitesync.compose.yml deploy/rabbitmq/rabbitmq.conf deploy/rabbitmq/enabled_plugins \
         deploy/haproxy/haproxy.cfg Dockerfile deploy/sqlserver/init.sql deploy/oracle/01-sitesync-logminer.sh \
         deploy/postgres/demo-tables.sql deploy/prometheus/prometheus.yml deploy/prometheus/rules/sitesync.rules.yml \
         deploy/grafana/provisioning/datasources/prometheus.yml deploy/grafana/provisioning/dashboards/sitesync.yml \
         deploy/grafana/dashboards/sitesync.json; do
  [[ -f $f ]] || { say "$f is missing" >&2; exit 1; }
done
for d in deploy/prometheus/rules deploy/grafana/provisioning/datasources deploy/grafana/provisioning/dashboards deploy/grafana/dashboards; do
  [[ -d $d ]] || { say "$d is missing (a folder the compose file mounts)" >&2; exit 1; }
done
# The dashboards must be JSON (Grafana skips a file that is not, with a line in its own log only).
for f in deploy/grafana/dashboards/*.json; do
  node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$f" 2>/dev/null || { say "$f is not valid JSON" >&2; exit 1; }
done
# Prometheus's configuration and rules, where promtool is installed (Debian package prometheus).
if command -v promtool >/dev/null 2>&1; then
  promtool check rules deploy/prometheus/rules/*.yml >/dev/null || { say "deploy/prometheus/rules: promtool check rules failed (above)" >&2; exit 1; }
fi

if ! docker-compose -f "$compose_file" config -q; then
  say "$compose_file is NOT valid" >&2
  exit 1
fi
# The live-test databases are profiles: checked with them switched on too.
for profile in sqlserver oracle; do
  if ! docker-compose -f "$compose_file" --profile "$profile" config -q; then
    say "$compose_file is NOT valid with --profile $profile" >&2
    exit 1
  fi
done
say "$compose_file is valid ($(docker-compose version --short 2>/dev/null || echo 'docker-compose'))"

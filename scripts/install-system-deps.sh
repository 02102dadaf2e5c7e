#!/usr/bin/env bash
# Installs the system packages the platform needs (PostgreSQL 15, Redis 7, pgBackRest,
# promtool) when they are missing, or says exactly what to install when it cannot.
set -euo pipefail

missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
# libfaketime: the backup tests run pgBackRest retention "ten days later"
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client-15)
# promtool: the chart's alert rules are unit-tested (tests/chart/test_alert_rules.py)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages start their own services; the platform runs its own instances.
  for service in redis-server postgresql prometheus; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
      systemctl stop "$service" || true
    fi
  done
  exit 0
fi

echo "missing system packages: ${missing[*]}" >&2
echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
exit 1

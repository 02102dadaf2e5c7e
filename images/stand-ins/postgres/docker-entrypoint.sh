#!/usr/bin/env bash
# The part of the official image's entrypoint that compose relies on: on an empty
# $PGDATA, initdb with POSTGRES_PASSWORD for the superuser (scram over TCP) and
# POSTGRES_DB created; as root, step down to postgres. Any other command runs as given.
set -euo pipefail
if [ "${1:0:1}" = - ]; then  # options only: for the server
  set -- postgres "$@"
fi
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
  install -d -m 0700 -o postgres -g postgres "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the superuser password)}"
  initdb --username="${POSTGRES_USER:-postgres}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --locale=C.UTF-8 >/dev/null
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
  printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  database=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
  if [ "$database" != postgres ]; then
    postgres --single -D "$PGDATA" postgres <<< "CREATE DATABASE \"$database\"" >/dev/null
  fi
fi
exec "$@"

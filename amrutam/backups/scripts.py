"""The shell programs of backup, restore and drill Jobs.

They run inside the images (the application image for backups, PostgreSQL's own image
for restores), so they are POSIX shell, not Python. The operator puts them in the Jobs it
builds; ``amrutam backup drill`` runs the same restore program on one host, and the
tests run them with the Jobs' exact arguments and environment.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

RUN_DIR = "/tmp/restore-run"  # noqa: S108  (a pod's emptyDir: socket, logs, hand-over files)

# `pgbackrest "$@" backup`, after an idempotent stanza-create (the first backup of a new
# installation creates the stanza). Options every command takes are arguments; the
# backup's own (PGBACKREST_TYPE, retention) are environment, which other commands ignore.
# Backups of one stanza never overlap: while another holds the stanza's lock on the
# database host (pgBackRest reports LockAcquireError from the remote, exit 50 or 56) this
# one waits; after LOCK_WAIT_S it stands down with a message (exit 0) rather than
# failing, and the operator posts the message as an Event.
BACKUP_SCRIPT = """\
out=/tmp/pgbackrest-backup.out
waited=0
while :; do
  { pgbackrest "$@" stanza-create && pgbackrest "$@" backup; } > "$out" 2>&1 && code=0 || code=$?
  cat "$out"
  [ "$code" -eq 0 ] && exit 0
  grep -q 'LockAcquireError\\|unable to acquire lock' "$out" || exit "$code"
  if [ "$waited" -ge "$LOCK_WAIT_S" ]; then
    echo "skipped: another backup of the stanza held its lock for ${waited}s" | tee "$RESULT"
    exit 0
  fi
  sleep "$LOCK_POLL_S"
  waited=$((waited + LOCK_POLL_S))
done
"""

# Restore what the options name into $PGDATA (a claim made for this restore), boot
# PostgreSQL on it without archiving or network until recovery ends, and report the
# point it actually reached. With PROBE_WAIT_S (a drill) the server stays up until the
# probe container has read it. Runs in the PostgreSQL image, as its user.
RESTORE_SCRIPT = """\
set -eu
started=$(date +%s)
run="$RUN_DIR"
mkdir -p "$PGDATA" "$run/spool"
chmod 700 "$PGDATA"
# The probe runs as another user in the pod's group (fsGroup): it writes its report here.
chmod 2770 "$run"
trap 'touch "$run/done"' EXIT
# A retry after a partial failure: what an earlier attempt left in this claim is ours.
find "$PGDATA" -mindepth 1 -delete
# --reset-pg1-host: the restore runs on the database's side of the repository.
pgbackrest --reset-pg1-host --pg1-path="$PGDATA" "$@" restore
printf 'local all all trust\\n' > "$run/hba.conf"
postgres -D "$PGDATA" -c listen_addresses= -c unix_socket_directories="$run" \\
  -c hba_file="$run/hba.conf" -c archive_mode=off > "$run/postgres.log" 2>&1 &
pg=$!
ask() { psql -h "$run" -U postgres -d postgres -XAtqc "$1" 2>/dev/null; }
until [ "$(ask 'SELECT pg_is_in_recovery()')" = f ]; do
  if ! kill -0 "$pg" 2>/dev/null; then tail -n 20 "$run/postgres.log" >&2; exit 1; fi
  sleep 1
done
recovered=$(date +%s)
reached=$(ask 'SELECT extract(epoch FROM pg_last_xact_replay_timestamp())')
touch "$run/ready"
if [ -n "${PROBE_WAIT_S:-}" ]; then
  waited=0
  until [ -e "$run/probed" ] || [ "$waited" -ge "$PROBE_WAIT_S" ]; do
    sleep 1
    waited=$((waited + 1))
  done
fi
kill -INT "$pg"
wait "$pg"
printf '{"restoredTo": %s, "recoverySeconds": %s}\\n' "${reached:-null}" \\
  "$((recovered - started))" | tee "$RESULT"
"""


def restore_report(message: str | None) -> tuple[datetime | None, int | None]:
    """What RESTORE_SCRIPT reports (a container's termination message): the commit time
    recovery reached (None if none was replayed, or no report) and the seconds it took."""
    try:
        found = json.loads(message or "")
    except ValueError:
        return None, None
    if not isinstance(found, dict):
        return None, None
    moment, seconds = found.get("restoredTo"), found.get("recoverySeconds")
    return (
        datetime.fromtimestamp(float(moment), UTC) if moment is not None else None,
        int(seconds) if seconds is not None else None,
    )

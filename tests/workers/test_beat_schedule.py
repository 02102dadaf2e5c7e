"""What beat sends, and how often (read in a process of its own: importing the Celery app
reads the settings, which the test process must not cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRINT_SCHEDULE = (
    "import json; from workers.app import app; print(json.dumps({name: [entry['task'], "
    "entry['schedule'] if isinstance(entry['schedule'], float) else None] "
    "for name, entry in app.conf.beat_schedule.items()}))"
)


def test_beat_sends_the_tasks_that_keep_sessions_and_holds_right() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PRINT_SCHEDULE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    schedule = json.loads(out.strip().splitlines()[-1])
    task, every = schedule["resend-revocations"]
    assert task == "workers.tasks.resend_revocations"
    assert every <= 5.0  # a Redis that lost the markers has them back within seconds
    task, every = schedule["end-expired-holds"]
    assert task == "workers.tasks.end_expired_holds"
    assert every <= 30.0

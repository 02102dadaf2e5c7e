"""The liveness rules on their own: who is outranked, and when the probe fails."""

from __future__ import annotations

import datetime

from amrutam_operator.liveness import Heartbeat, outranked, priority

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


def peer(priority_: int, seconds_ago: float, lifetime: int = 60) -> dict[str, object]:
    seen = (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat()
    return {"priority": priority_, "lastseen": seen, "lifetime": lifetime}


def test_the_copy_started_first_leads_and_copies_started_together_differ() -> None:
    """N12: the priority came from the pod's name alone, so a replacement pod with a
    higher hash took the lead from a live leader."""
    names = [f"amrutam-operator-7d9c8b6f5-{suffix}" for suffix in ("x2kqp", "m9zrt", "a1b2c")]
    started = 1_796_000_000.0
    assert priority(names[0], started) > priority(names[1], started + 1)  # the incumbent
    assert len({priority(n, started) for n in names}) == 3
    assert priority(names[0], started) == priority(names[0], started + 0.5)


def test_a_live_higher_or_equal_peer_outranks_and_a_dead_one_does_not() -> None:
    assert outranked({"me": peer(5, 1), "other": peer(9, 1)}, 5, NOW)
    assert outranked({"me": peer(5, 1), "twin": peer(5, 1)}, 5, NOW)  # kopf freezes both
    assert not outranked({"me": peer(5, 1), "other": peer(3, 1)}, 5, NOW)
    assert not outranked({"me": peer(5, 1), "gone": peer(9, 61)}, 5, NOW)


def test_the_probe_fails_when_the_streams_stall_while_the_api_answers() -> None:
    beat = Heartbeat(period=10, started=0)
    beat.took(1)
    assert beat.problem(25) is None  # still starting
    assert "watch streams" in (beat.problem(32) or "")
    beat.seen = 30
    assert beat.problem(32) is None
    beat.standby = True  # a paused copy's streams are stopped on purpose
    beat.seen = 0
    assert beat.problem(40) is None


def test_the_probe_stays_healthy_while_the_api_is_away() -> None:
    """N13: three missed heartbeats (an API server upgrade or outage of a minute)
    restarted every operator pod, and their crash loop delayed the recovery."""
    beat = Heartbeat(period=10, started=0)
    beat.took(1)
    beat.seen = 5
    beat.missed()  # the API stops answering for ten minutes
    assert beat.problem(600) is None
    beat.took(600)  # back: the streams get three periods to deliver again
    assert beat.problem(620) is None
    assert "watch streams" in (beat.problem(631) or "")

"""Peering priority and a liveness probe that fails when the watch streams stall.

kopf's own probe only says the event loop answers. An operator whose watch streams hang
(a half-open connection, an API server that stops sending) answers too, and never acts
again. So a heartbeat: every ``heartbeat_s`` the operator annotates its peering object,
and an event handler notes when that change comes back through a watch stream. The probe
fails when the API has taken every heartbeat for three periods and none came back
(unless a peer holds the lead, which pauses this copy's streams on purpose).

An API that takes no heartbeat is not this pod's fault: a control-plane upgrade or
outage. Restarting every operator pod for it would add a crash loop's back-off to the
wait (N13), so the probe stays healthy and the log says so; the streams are reopened
when the API is back. Every other stream is bounded by kopf's client timeout, so one that
goes silent is reopened rather than trusted.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import kopf

from amrutam_operator import config, kube, metrics

logger = logging.getLogger(__name__)
ANNOTATION = "platform.amrutam.io/heartbeat"


def priority(identity: str, started: float) -> int:
    """A process's peering priority: the earlier it started, the higher (N12).

    So the copy that leads keeps the lead: a replacement pod started later never takes it
    over while the leader lives (kopf pauses the lower priority, and its pause is no fence
    for handlers already running). Two copies started in the same second are told apart
    by their pod's name, since kopf freezes every peer when two share a priority.
    """
    return (2**31 - int(started)) * 1000 + zlib.crc32(identity.encode()) % 1000


def outranked(peers: dict[str, Any], mine: int, now: datetime.datetime) -> bool:
    """Whether a live peer pauses this one (kopf: a higher priority, or an equal one)."""
    alive = []
    for peer in peers.values():
        if not isinstance(peer, dict):
            continue
        try:
            seen = datetime.datetime.fromisoformat(str(peer["lastseen"]))
            lifetime = datetime.timedelta(seconds=int(peer.get("lifetime", 60)))
        except (KeyError, ValueError):
            continue
        seen = seen if seen.tzinfo else seen.replace(tzinfo=datetime.UTC)
        if seen + lifetime > now:
            alive.append(int(peer.get("priority", 0)))
    return any(p > mine for p in alive) or alive.count(mine) > 1


@dataclass
class Heartbeat:
    """What the probe judges: since when the API has taken every beat, and when one
    last came back through a watch stream."""

    period: float
    started: float = field(default_factory=time.monotonic)
    taking_since: float | None = None  # None: the last beat was not taken
    seen: float | None = None
    standby: bool = False
    task: asyncio.Task[None] | None = None

    def took(self, now: float) -> None:
        if self.taking_since is None:
            self.taking_since = now

    def missed(self) -> None:
        self.taking_since = None

    def problem(self, now: float) -> str | None:
        if self.standby or self.taking_since is None:
            return None
        limit = 3 * self.period
        if now - max(self.seen or self.started, self.taking_since) > limit:
            return (
                f"the watch streams have delivered nothing for {limit:.0f}s "
                "while the Kubernetes API takes every heartbeat"
            )
        return None


STATE: Heartbeat | None = None


def _where(settings: kopf.OperatorSettings) -> tuple[str, str | None]:
    """kopf's own peering object: cluster-wide or in the operator's namespace."""
    if settings.peering.clusterwide:
        return "clusterkopfpeerings", None
    return "kopfpeerings", config.settings().namespace


async def _beat(state: Heartbeat, settings: kopf.OperatorSettings) -> None:
    plural, namespace = _where(settings)
    while True:
        now = datetime.datetime.now(datetime.UTC)
        try:
            peering = await kube.annotate_peering(
                plural, namespace, settings.peering.name, {ANNOTATION: now.isoformat()}
            )
        except Exception as exc:  # the API is away: wait for it, a restart would not help
            logger.warning("Heartbeat not taken (the Kubernetes API is away?): %s", exc)
            state.missed()
        else:
            state.took(time.monotonic())
            state.standby = outranked(peering.get("status") or {}, settings.peering.priority, now)
            if state.standby:
                metrics.stand_by()
        await asyncio.sleep(state.period)


def _came_back(**_: Any) -> None:
    if STATE is not None:
        STATE.seen = time.monotonic()


def _not_heartbeats(record: logging.LogRecord) -> bool:
    """kopf logs every indexer call; a heartbeat's would fill the log."""
    return "'heartbeat'" not in record.getMessage()


def start(settings: kopf.OperatorSettings) -> None:
    """At start-up: take a priority, and begin the heartbeat (not when standalone)."""
    global STATE
    conf = config.settings()
    settings.peering.priority = (
        conf.priority if conf.priority is not None else priority(conf.pod_name, time.time())
    )
    # Bound every stream: one that goes silent past this is reopened, not trusted.
    settings.watching.server_timeout = conf.watch_timeout_s
    settings.watching.client_timeout = 2 * conf.watch_timeout_s
    settings.watching.connect_timeout = 30
    if conf.standalone:
        return
    logging.getLogger("kopf.objects").addFilter(_not_heartbeats)
    STATE = Heartbeat(period=conf.heartbeat_s)
    plural, _ = _where(settings)
    # Registered here, once kopf knows which kind it peers in. An index: it keeps no
    # progress annotations on the object (its per-call log line is filtered out above).
    kopf.index(
        "kopf.dev",
        "v1",
        plural,
        id="heartbeat",
        when=lambda name, **_: bool(name == settings.peering.name),
    )(_came_back)
    # Held by the state: the loop keeps only a weak reference to a task.
    STATE.task = asyncio.get_running_loop().create_task(_beat(STATE, settings), name="heartbeat")


@kopf.on.probe(id="watching")
def watching(**_: Any) -> str:
    """Served on kopf's liveness endpoint: raises (HTTP 500) when the operator is stuck."""
    if STATE is None:
        return "standalone"
    problem = STATE.problem(time.monotonic())
    if problem:
        logger.error("Liveness: %s", problem)
        raise kopf.PermanentError(problem)  # a plain error would be retried, not reported
    return "standby" if STATE.standby else "active"

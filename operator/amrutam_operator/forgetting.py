"""A deleted resource leaves no metric series: nothing alerts on, or charts, what is gone.

Each kind's timer polls take turns with this deletion handler (``turns``), so a poll in
flight when the resource is deleted cannot set a series again after it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from amrutam_operator import audit_partitions, backups, metrics, restores, scaling, turns
from amrutam_operator.config import GROUP, VERSION

KINDS = {
    "auditpartitionpolicies": audit_partitions.KIND,
    "backupschedules": backups.KIND,
    "pointintimerestores": restores.KIND,
    "scalingpolicies": scaling.KIND,
}


def _forgetting(kind: str) -> Callable[..., Awaitable[None]]:
    async def forget(memo: kopf.Memo, namespace: str | None, name: str, **_: Any) -> None:
        async with turns.deletion(memo):
            metrics.forget(kind, namespace or "default", name)

    return forget


for _plural, _kind in KINDS.items():
    kopf.on.delete(GROUP, VERSION, _plural, id="forget-series", optional=True)(_forgetting(_kind))

"""``python -m amrutam_operator.uninstall``: the chart's pre-delete hook.

Every custom resource carries the operator's finalizer, and Helm deletes the operator
(its Deployment, its Role) before resources of kinds it does not know. Left to Helm, the
resources and then the namespace would hang on finalizers nobody releases. This hook
runs first, while the operator still runs: it deletes the release namespace's custom
resources and waits until the operator has released them (a drain given back, metrics
forgotten). Exit 1 when some are still there at the deadline, so Helm says so.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from amrutam_operator import kube

PLURALS = ("scalingpolicies", "auditpartitionpolicies", "backupschedules", "pointintimerestores")


async def remaining(namespace: str) -> list[str]:
    return [
        f"{plural}/{item['metadata']['name']}"
        for plural in PLURALS
        for item in await kube.custom_objects(namespace, plural)
    ]


async def remove_all(namespace: str, deadline_s: float) -> list[str]:
    """Delete them all, then wait; returns what is left at the deadline."""
    for entry in await remaining(namespace):
        plural, name = entry.split("/", 1)
        await kube.delete_custom_object(namespace, plural, name)
    until = time.monotonic() + deadline_s
    left = await remaining(namespace)
    while left and time.monotonic() < until:
        await asyncio.sleep(1)
        left = await remaining(namespace)
    return left


def main() -> int:
    namespace = os.environ["POD_NAMESPACE"]
    left = asyncio.run(remove_all(namespace, float(os.environ.get("DEADLINE_S", "240"))))
    if left:
        print(f"still present (is the operator running?): {', '.join(left)}", file=sys.stderr)
        return 1
    print(f"custom resources of {namespace} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Operator start-up: connection, peering, Events, metrics and liveness."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from prometheus_client import start_http_server

from amrutam_operator import config, crds, liveness


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    conf = config.settings()
    # The Kubernetes client, pgBackRest and Celery's control calls block: they run on
    # threads. Enough of them that a slow repository or broker (pgbackrest info waits for
    # its timeouts) cannot leave the scaling policies waiting for a free thread.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=conf.blocking_threads, thread_name_prefix="operator-io")
    )
    # One active operator: peers pause while a higher-priority one runs (kopf peering;
    # liveness.start gives each replica its own priority).
    settings.peering.name = conf.peering_name
    settings.peering.standalone = conf.standalone
    settings.peering.mandatory = not conf.standalone
    # Events for what the handlers do (info) and what fails (warnings).
    settings.posting.level = logging.INFO
    # kopf keeps its bookkeeping in annotations; status belongs to our conditions.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    try:
        await crds.check()
    except crds.Outdated as exc:  # every restart says it again, until they are upgraded
        raise kopf.PermanentError(str(exc)) from exc
    if conf.metrics_port:
        start_http_server(conf.metrics_port)
    liveness.start(settings)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    url = config.settings().kube_api_url
    if url:
        return kopf.ConnectionInfo(server=url, insecure=True)
    return kopf.login_via_client(**kwargs)

"""Operator settings from the environment (prefix ``AMRUTAM_OPERATOR_``)."""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

GROUP = "platform.amrutam.io"
VERSION = "v1alpha1"


class JobPod(BaseModel):
    """Fields of a pod spec, as Kubernetes spells them (the chart passes them as JSON)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image_pull_secrets: list[dict[str, Any]] = Field(default=[], alias="imagePullSecrets")
    node_selector: dict[str, str] = Field(default={}, alias="nodeSelector")
    tolerations: list[dict[str, Any]] = []
    affinity: dict[str, Any] = {}
    priority_class_name: str = Field(default="", alias="priorityClassName")

    def fields(self) -> dict[str, Any]:
        """The pod spec's fields that are set."""
        return self.model_dump(by_alias=True, exclude_defaults=True)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMRUTAM_OPERATOR_", extra="ignore")

    # Where the Kubernetes API is. Unset: in-cluster service account, else ~/.kube/config.
    # Set it to reach an API without credentials, e.g. `kubectl proxy` on a laptop.
    kube_api_url: str | None = None
    # Peering: with two operator pods (a rollout, a mistaken scale-up) only the one with
    # the highest priority acts; `standalone` turns that off (one replica, or tests).
    peering_name: str = "amrutam"
    standalone: bool = False
    # Each replica's peering priority: given, or taken from its pod name (distinct per pod).
    priority: int | None = None
    pod_name: str = Field(default_factory=socket.gethostname)
    # The namespace the operator runs in and peers in (the chart passes it).
    namespace: str = "default"
    # Liveness: a heartbeat through the peering object every this many seconds; the probe
    # fails after three missed. Watch streams are reopened after watch_timeout_s.
    heartbeat_s: float = Field(20.0, gt=0)
    watch_timeout_s: int = Field(300, ge=1)
    # How often each resource's timer wakes to see whether its own interval has passed.
    tick_s: float = Field(5.0, gt=0)
    # Backoff after a failed reconciliation: base * 2^retry, capped.
    retry_base_s: float = Field(10.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    # The longest a scale-down waits for a draining worker to finish its tasks.
    drain_timeout_s: float = Field(900.0, gt=0)
    # The image backup and restore Jobs run (it carries pgbackrest), unless a
    # BackupSchedule names its own; and how often backup status is refreshed.
    backup_image: str = "ghcr.io/amrutam/amrutam:latest"
    # Restore and drill Jobs boot PostgreSQL on what they restored: the database's own
    # image (PostgreSQL and the same pgBackRest), as the user it runs as.
    postgres_image: str = "ghcr.io/amrutam/postgresql-pgbackrest:15"
    postgres_uid: int = Field(999, ge=1)
    # Laid on the pod of every Job and CronJob it makes (backups, restores, drills): pull
    # secrets and placement, which a private registry and tainted node pools need.
    job_pod: JobPod = Field(default_factory=lambda: JobPod())
    backup_status_interval_s: float = Field(60.0, gt=0)
    metrics_port: int = Field(9810, ge=0, le=65535, description="0 turns the endpoint off")
    # Threads for blocking calls (Kubernetes client, pgBackRest, Celery control).
    blocking_threads: int = Field(32, ge=4)


@lru_cache
def settings() -> OperatorSettings:
    return OperatorSettings()


def backoff(retry: int) -> float:
    conf = settings()
    return float(min(conf.retry_max_s, conf.retry_base_s * 2 ** min(retry, 20)))

"""The chart's generated Secret, written once by a hook Job: ``python -m amrutam_operator.secrets``.

Rendering random values in a template re-rolls them on every `helm template` or Argo CD
sync (there is no ``lookup`` there), which ends sessions, breaks the audit seal chain and
locks the application out of its database. So the chart renders only what is fixed (the
plan: hosts, ports, users; and the values the operator gave) and this Job, in the
cluster, keeps each random value it finds in the Secret and generates only the missing
ones (the pattern of GitLab's shared-secrets Job). Helm does not own the Secret, so
neither an upgrade nor a sync can change it; `helm uninstall` leaves it.

Environment: ``AMRUTAM_SECRETS_NAME`` (the Secret), ``AMRUTAM_SECRETS_PLAN`` (JSON, see
``Plan``), ``POD_NAMESPACE``, and the given values under their own keys (optional).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import string
import sys
from collections.abc import Callable, Mapping
from urllib.parse import quote

from kubernetes.client import CoreV1Api, V1ObjectMeta, V1Secret
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from amrutam_operator import kube

# (API group, resource, verb) the Job makes, with its own account; the chart's hook Role
# grants exactly these (a chart test checks).
CALLS = {("", "secrets", "get"), ("", "secrets", "create"), ("", "secrets", "patch")}
GIVEN = (
    "AMRUTAM_APP_ROLE_PASSWORD",
    "AMRUTAM_JWT_SECRET",
    "AMRUTAM_AUDIT_SIGNING_KEY",
    "AMRUTAM_MFA_ENCRYPTION_KEY",
    "POSTGRES_PASSWORD",
    "DATABASE_ADMIN_PASSWORD",
    "REDIS_PASSWORD",
)


class Database(BaseModel):
    host: str
    port: int
    name: str
    sslmode: str
    admin_user: str
    in_cluster: bool  # the chart's own PostgreSQL: the superuser administers it


class Redis(BaseModel):
    host: str
    port: int
    db: int
    tls: bool


class Plan(BaseModel):
    database: Database
    redis: Redis


def token() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(40))


def env_secret(
    plan: Plan,
    given: Mapping[str, str],
    existing: Mapping[str, str],
    new: Callable[[], str] = token,
) -> dict[str, str]:
    """The Secret's data: given values first, then the ones it holds, then new ones."""

    def kept(key: str) -> str:
        return given.get(key) or existing.get(key) or new()

    def held(key: str) -> str:
        """An outside service's password, which only the operator can give: the one given,
        else the one held (an upgrade that leaves it out of the values keeps it)."""
        value = given.get(key) or existing.get(key, "")
        if value:
            data[key] = value
        return value

    db, redis = plan.database, plan.redis
    data = {
        "AMRUTAM_APP_ROLE_PASSWORD": kept("AMRUTAM_APP_ROLE_PASSWORD"),
        "AMRUTAM_JWT_SECRET": kept("AMRUTAM_JWT_SECRET"),
        "AMRUTAM_AUDIT_SIGNING_KEY": kept("AMRUTAM_AUDIT_SIGNING_KEY"),
        "AMRUTAM_MFA_ENCRYPTION_KEY": kept("AMRUTAM_MFA_ENCRYPTION_KEY"),
    }
    if db.in_cluster:
        data["POSTGRES_PASSWORD"] = admin_password = kept("POSTGRES_PASSWORD")
        admin_user = "postgres"
    else:
        admin_user, admin_password = db.admin_user, held("DATABASE_ADMIN_PASSWORD")
    where = f"{db.host}:{db.port}/{db.name}?ssl={db.sslmode}"
    app = quote(data["AMRUTAM_APP_ROLE_PASSWORD"], safe="")
    data["AMRUTAM_DATABASE_URL"] = f"postgresql+asyncpg://amrutam_app:{app}@{where}"
    admin = f"{quote(admin_user, safe='')}:{quote(admin_password, safe='')}"
    data["AMRUTAM_DATABASE_ADMIN_URL"] = f"postgresql+asyncpg://{admin}@{where}"
    redis_password = held("REDIS_PASSWORD")
    auth = f":{quote(redis_password, safe='')}@" if redis_password else ""
    scheme = "rediss" if redis.tls else "redis"
    data["AMRUTAM_REDIS_URL"] = f"{scheme}://{auth}{redis.host}:{redis.port}/{redis.db}"
    return data


def main() -> int:
    name, namespace = os.environ["AMRUTAM_SECRETS_NAME"], os.environ["POD_NAMESPACE"]
    plan = Plan.model_validate(json.loads(os.environ["AMRUTAM_SECRETS_PLAN"]))
    given = {key: os.environ[key] for key in GIVEN if os.environ.get(key)}
    api = CoreV1Api(kube.client())
    try:
        found = api.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        found = None
    existing = None
    if found is not None:
        existing = {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}
    data = env_secret(plan, given, existing or {})
    changed = sorted(k for k in data if (existing or {}).get(k) != data[k])
    if existing is not None and not changed:  # (keys added by hand are left alone)
        print(f"secret {name} is up to date")
        return 0
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    if found is None:
        labels = {"app.kubernetes.io/managed-by": "amrutam-secrets"}
        meta = V1ObjectMeta(name=name, labels=labels)
        api.create_namespaced_secret(
            namespace, V1Secret(metadata=meta, type="Opaque", data=encoded)
        )
    else:
        assert found.metadata is not None
        # With the version read: a concurrent writer makes this fail, not vanish.
        version = {"resourceVersion": found.metadata.resource_version}
        api.patch_namespaced_secret(name, namespace, {"metadata": version, "data": encoded})
    print(f"secret {name}: {'created' if existing is None else 'updated'} ({', '.join(changed)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Sanic application factory: ``sanic api.app:create_app --factory``."""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import multiprocess
from sanic import Sanic
from sanic_ext.extensions.http.extension import HTTPExtension
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from amrutam.audit.service import AuditTrail
from amrutam.auth.service import Accounts
from amrutam.auth.sessions import Revocations
from amrutam.auth.throttle import Throttle
from amrutam.consultations.service import Consultations
from amrutam.doctors.service import DoctorDirectory
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database, create_engine
from amrutam.infra.idempotency import IdempotencyStore, sealing_key
from amrutam.infra.logs import configure_logging
from amrutam.infra.ratelimit import RateLimiter
from amrutam.infra.redis_client import create_redis
from amrutam.scheduling.availability import Availability
from amrutam.scheduling.holds import Holds
from amrutam.scheduling.limits import BookingLimits
from amrutam.scheduling.service import Scheduling
from amrutam.scheduling.waitlist import Waitlist
from amrutam.settings import Settings, get_settings
from api import middleware, outages
from api.context import Policies, Services
from api.fhir import routes as fhir
from api.fhir.capability import capability
from api.openapi import document
from api.problems import ProblemErrorHandler
from api.routes import audit, auth, consultations, doctors, holds, ops, scheduling


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


def create_app(settings: Settings | None = None) -> Sanic[Any, Any]:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_file)
    app = Sanic("amrutam", dumps=_dumps, error_handler=ProblemErrorHandler())
    app.config.update(
        REQUEST_MAX_SIZE=settings.max_body_bytes,
        PROXIES_COUNT=settings.trusted_proxies,
        REAL_IP_HEADER=None,
        FALLBACK_ERROR_FORMAT="json",
        ACCESS_LOG=False,
        KEEP_ALIVE_TIMEOUT=75,
        GRACEFUL_SHUTDOWN_TIMEOUT=settings.shutdown_grace_s,
        OAS_URL_PREFIX="/docs",
        OAS_UI_DEFAULT="swagger",
        OAS_UI_REDOC=False,
        CORS=False,
        HEALTH=False,
    )
    # Sanic Extensions for the OpenAPI UI and HTTP's automatic HEAD and OPTIONS only:
    # its dependency injection (unused here) costs a signal dispatch on every request.
    app.extend(extensions=[OpenAPIExtension, HTTPExtension], built_in_extensions=False)

    middleware.install(app)
    app.blueprint(ops.bp)
    app.blueprint(auth.bp)
    app.blueprint(doctors.bp)
    app.blueprint(scheduling.bp)
    app.blueprint(scheduling.slots)
    app.blueprint(holds.bp)
    app.blueprint(consultations.bp)
    app.blueprint(audit.bp)
    app.blueprint(fhir.bp)
    outages.install(app)

    @app.before_server_start
    async def _describe(app: Sanic[Any, Any]) -> None:
        # Built once the router is final; /docs (sanic-ext's Swagger UI) shows the same file.
        app.ctx.openapi = orjson.dumps(
            document(
                app,
                "Amrutam API",
                "1",
                "Telemedicine backend: accounts, doctors, slots, bookings, consultations.",
            )
        )
        app.ctx.fhir_capability = capability(app, "1")
        path = Path(tempfile.gettempdir()) / f"amrutam-openapi-{os.getpid()}.json"
        path.write_bytes(app.ctx.openapi)
        app.config.OAS_CUSTOM_FILE = str(path)

    @app.before_server_start
    async def _connect(app: Sanic[Any, Any]) -> None:
        engine = create_engine(settings, application_name="amrutam-api")
        redis = create_redis(settings)
        db, cache = Database(engine, settings.db_wait_s), Cache(redis)
        limiter = RateLimiter(redis)
        limits = BookingLimits(settings.max_open_bookings, settings.max_open_bookings_per_doctor)
        app.ctx.services = Services(
            settings=settings,
            db=db,
            redis=redis,
            limiter=limiter,
            policies=Policies.from_settings(settings),
            idempotency=IdempotencyStore(
                redis,
                settings.idempotency_ttl_s,
                settings.idempotency_lock_s,
                sealing_key(settings.jwt_secret.get_secret_value().encode()),
            ),
            auth=Accounts(
                db,
                settings,
                Throttle.for_passwords(limiter, settings),
                code_throttle=Throttle.for_codes(limiter, settings),
                revocations=Revocations(redis, settings.access_token_ttl_s),
            ),
            cache=cache,
            doctors=DoctorDirectory(db, cache),
            availability=Availability(db, cache, settings.hold_ttl_s),
            scheduling=Scheduling(
                db,
                cache,
                redis,
                settings.slot_lock_ttl_ms,
                limits,
                settings.hold_ttl_s,
            ),
            holds=Holds(
                db,
                cache,
                redis,
                settings.slot_lock_ttl_ms,
                settings.hold_ttl_s,
                limits,
                settings.hold_cooldown_s,
            ),
            waitlist=Waitlist(db, cache, settings.hold_ttl_s, settings.max_waitlist_entries),
            consultations=Consultations(db),
            audit=AuditTrail(db, settings.audit_signing_key.get_secret_value().encode()),
        )

    @app.after_server_start
    async def _freeze(app: Sanic[Any, Any]) -> None:
        # What is loaded by now lives as long as the process: keep it out of the
        # collector's later full passes (over 100,000 objects, tens of ms each).
        gc.collect()
        gc.freeze()

    @app.after_server_stop
    async def _disconnect(app: Sanic[Any, Any]) -> None:
        await app.ctx.services.db.dispose()
        await app.ctx.services.redis.aclose()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    return app

"""What each API worker process holds: connections and services, built at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from amrutam.audit.service import AuditTrail
from amrutam.auth.service import Accounts
from amrutam.consultations.service import Consultations
from amrutam.doctors.service import DoctorDirectory
from amrutam.infra.cache import Cache
from amrutam.infra.db import Database
from amrutam.infra.idempotency import IdempotencyStore
from amrutam.infra.ratelimit import Policy, RateLimiter
from amrutam.scheduling.availability import Availability
from amrutam.scheduling.holds import Holds
from amrutam.scheduling.service import Scheduling
from amrutam.scheduling.waitlist import Waitlist
from amrutam.settings import Settings


@dataclass
class Policies:
    anonymous: Policy
    user: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            anonymous=Policy.parse("anonymous", settings.rate_limit_anonymous),
            user=Policy.parse("user", settings.rate_limit_user),
        )


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: Redis
    limiter: RateLimiter
    policies: Policies
    idempotency: IdempotencyStore
    auth: Accounts
    cache: Cache
    doctors: DoctorDirectory
    availability: Availability
    scheduling: Scheduling
    holds: Holds
    waitlist: Waitlist
    consultations: Consultations
    audit: AuditTrail

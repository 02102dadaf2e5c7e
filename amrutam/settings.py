"""Settings from the environment (prefix ``AMRUTAM_``).

Every default works for the local stack; production must set the secrets, and a
production process without a real JWT secret refuses to start.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me-0123456789"
DEV_AUDIT_KEY = "dev-only-insecure-audit-signing-key-0123456789"
DEV_MFA_KEY = "dev-only-insecure-mfa-encryption-key-0123456789"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMRUTAM_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"

    # Connections
    # The API and workers connect as the application role; migrations and partition
    # maintenance as an administrator that may act as the owner role.
    database_url: str = "postgresql+asyncpg://amrutam_app@127.0.0.1:54329/amrutam"
    database_admin_url: str = "postgresql+asyncpg://postgres@127.0.0.1:54329/amrutam"
    # A fixed pool: SQLAlchemy closes an overflow connection when it is returned, so
    # under load overflow means a new PostgreSQL connection (and backend) per request.
    db_pool_size: int = Field(20, ge=1, le=200)
    db_max_overflow: int = Field(0, ge=0, le=200)
    db_pool_timeout: float = Field(5.0, gt=0)
    # How long a request waits for the database through a restart or a failover before it
    # is answered 503 (0: never wait). A multi-host URL finds a promoted standby:
    # postgresql+asyncpg://user@/db?host=a:5432&host=b:5432&target_session_attrs=read-write
    db_wait_s: float = Field(3.0, ge=0, le=30)
    db_statement_timeout_ms: int = Field(15_000, ge=0)
    redis_url: str = "redis://127.0.0.1:63799/0"
    redis_timeout: float = Field(0.5, gt=0, description="socket timeout for Redis calls, seconds")

    # HTTP server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(2, ge=1)
    # /metrics on a port of its own (0: only on the API port), so that Prometheus needs no
    # access to the API port in the cluster.
    metrics_port: int = Field(0, ge=0, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    trusted_proxies: int = Field(0, ge=0, description="proxies whose X-Forwarded-For is trusted")
    # Where clients reach the API (scheme, host, any path prefix): the base of the absolute
    # links it writes (FHIR Bundles). Never taken from a request's Host header, which the
    # client chooses. Empty: links are relative to the API's root.
    public_base_url: str = Field("", pattern=r"^(https?://[^/?#\s]+(/[^?#\s]*)?)?$", max_length=512)
    # On SIGTERM the server stops accepting connections and gives the requests in flight
    # this long to finish (the chart's terminationGracePeriodSeconds leaves room for it).
    shutdown_grace_s: float = Field(20.0, ge=0, le=300)

    # Tokens
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_key_id: str = "k1"
    jwt_issuer: str = "amrutam"
    access_token_ttl_s: int = Field(900, ge=30)
    refresh_token_ttl_s: int = Field(30 * 24 * 3600, ge=60)
    # HMAC key of the audit seals; keep it out of the database and its backups.
    audit_signing_key: SecretStr = SecretStr(DEV_AUDIT_KEY)

    # Second factor (TOTP). Doctors and admins must enrol when this is on: until they do,
    # their tokens reach only /v1/auth/me, /v1/auth/mfa/* and logout.
    mfa_required: bool = False
    # Encrypts TOTP secrets at rest; like the audit key, keep it out of the database.
    mfa_encryption_key: SecretStr = SecretStr(DEV_MFA_KEY)
    # How long the password step of a two-step login stays good for its code.
    mfa_token_ttl_s: int = Field(300, ge=30, le=1800)

    # Argon2id cost: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane), about 25 ms
    # of one core per hash here. Raise both where logins are rare and cores are many.
    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_kib: int = Field(19_456, ge=1024)
    # Threads hashing passwords, per process: each holds argon2_memory_kib while it works.
    argon2_threads: int = Field(1, ge=1, le=32)

    # Rate limits ("N/period" strings understood by the `limits` library)
    rate_limit_anonymous: str = "300/minute"
    rate_limit_user: str = "1200/minute"
    rate_limit_login_ip: str = "20/minute"
    # Failed logins per account from one address, and per account from anywhere.
    rate_limit_login_account: str = "5/15 minutes"
    rate_limit_login_account_total: str = "50/15 minutes"
    # Second-factor codes (login, enrolment, disabling): per address, per account and
    # address, per account from anywhere. A code is one of 10^6: keep these tight.
    rate_limit_mfa_ip: str = "20/minute"
    rate_limit_mfa_account: str = "5/5 minutes"
    rate_limit_mfa_account_total: str = "10/15 minutes"
    slot_lock_ttl_ms: int = Field(5000, ge=1, description="Redis lock per slot while booking")
    # How long a hold keeps a slot for its patient (POST /v1/slots/{id}/hold).
    hold_ttl_s: int = Field(600, ge=1, le=3600)
    # Upcoming bookings one patient may hold, in all and with one doctor (slot hoarding).
    max_open_bookings: int = Field(10, ge=1)
    max_open_bookings_per_doctor: int = Field(3, ge=1)
    # How long a patient waits before holding again a slot whose hold of theirs ended
    # (released, replaced or expired): without it a hold renews for ever.
    hold_cooldown_s: int = Field(600, ge=0, le=86_400)
    # Waitlists (a doctor's date each) one patient may be in at a time.
    max_waitlist_entries: int = Field(5, ge=1, le=100)
    idempotency_ttl_s: int = 24 * 3600
    idempotency_lock_s: int = Field(60, ge=1, description="how long an in-flight key blocks")

    # Notifications: "log" writes each message as a structured log line; "smtp" sends mail.
    notification_provider: Literal["log", "smtp"] = "log"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_from: str = "Amrutam <no-reply@amrutam.example>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(10.0, gt=0)
    task_max_retries: int = Field(6, ge=0, le=50)
    task_retry_backoff_max_s: int = Field(600, ge=1)
    # Full jitter spreads retries of many failed tasks; off gives exact 2, 4, 8 s delays.
    task_retry_jitter: bool = True
    broker_visibility_timeout_s: int = Field(
        600, ge=5, description="an unacknowledged task is redelivered after this long"
    )
    worker_metrics_port: int = Field(9808, ge=1, le=65535)

    # Backups (pgBackRest): the configuration file `amrutam backup` uses, and its stanza.
    backup_config: str = ".local/pgbackrest/pgbackrest.conf"
    backup_stanza: str = "amrutam"

    # Logging
    log_level: str = "INFO"
    log_file: str | None = Field(None, description="also log to this file, rotated daily")

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.environment != "production":
            return self
        for name, value, dev in (
            ("AMRUTAM_JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET),
            ("AMRUTAM_AUDIT_SIGNING_KEY", self.audit_signing_key, DEV_AUDIT_KEY),
            ("AMRUTAM_MFA_ENCRYPTION_KEY", self.mfa_encryption_key, DEV_MFA_KEY),
        ):
            secret = value.get_secret_value()
            if secret == dev or len(secret) < 32:
                raise ValueError(f"{name} must be a random value of 32+ characters in production")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

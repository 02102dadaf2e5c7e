"""Domain errors. Adapters map each kind to their own answer (HTTP status, exit code)."""

from __future__ import annotations

from dataclasses import dataclass


class AmrutamError(Exception):
    """Base of every error the core raises on purpose."""

    title = "Error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(AmrutamError):
    title = "Not found"


class Conflict(AmrutamError):
    title = "Conflict"


class AuthenticationFailed(AmrutamError):
    title = "Authentication failed"


class PermissionDenied(AmrutamError):
    title = "Forbidden"


class EnrolmentRequired(PermissionDenied):
    """The account must set up a second factor before it may do this."""

    title = "Second factor required"
    kind = "mfa-enrolment-required"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class InvalidInput(AmrutamError):
    title = "Validation failed"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class Busy(AmrutamError):
    """Try again shortly (contention or a rate limit)."""

    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class Unavailable(AmrutamError):
    """A backing service needed for this request is down."""

    title = "Service unavailable"

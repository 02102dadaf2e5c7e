"""What a route promises: its summary, body, query, answer and the errors its use case
gives. ``api/openapi.py`` turns these, with what the router and guards already know
(path parameters, roles, idempotency), into the served OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel
from sanic import Request

F = TypeVar("F", bound=Callable[..., object])
# Whether a request is a cached read (see Contract.cached).
CachedWhen = Callable[[Request], bool]


@dataclass(frozen=True)
class Contract:
    summary: str
    tag: str
    ok: int = 200
    response: type[BaseModel] | None = None
    body: tuple[type[BaseModel], ...] = ()
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # statuses the use case itself answers (404, 409, ...)
    # A read answered from the Redis cache: its rate-limit hit rides on the cache read
    # (api/middleware.py), so the handler runs before the limit is known; only for reads
    # without side effects whose answer is the same whoever asks (the caller's session is
    # not checked). A function says it per request, for a route that is not always one.
    cached: bool | CachedWhen = False


def contract(
    summary: str,
    *,
    tag: str,
    ok: int = 200,
    response: type[BaseModel] | None = None,
    body: type[BaseModel] | tuple[type[BaseModel], ...] = (),
    query: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    cached: bool | CachedWhen = False,
) -> Callable[[F], F]:
    bodies = body if isinstance(body, tuple) else (body,)

    def mark(handler: F) -> F:
        handler.__dict__["contract"] = Contract(
            summary, tag, ok, response, bodies, query, tuple(sorted(set(errors))), cached
        )
        return handler

    return mark

"""FHIR search parameters, read strictly: an unknown parameter, a prefix or modifier we
do not support, or a malformed value is a 400 OperationOutcome, never a silent
"match everything".

A search names the parameters it takes (``Params``); ``read`` checks a request's query
against them and returns the values by name. Paging is ``_count`` (default 20, at most
100; more is served as 100, as the specification allows) and ``_cursor``, the opaque
keyset cursor of ``/v1``, which the ``next`` link carries.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlencode

from sanic import Request

from amrutam.pagination import DEFAULT_LIMIT, MAX_LIMIT
from api.fhir.outcome import BASE
from api.fhir.resources import our_id
from api.middleware import services
from api.problems import BadRequest

Kind = Literal["reference", "token", "date"]
PAGING = ("_count", "_cursor", "_format")
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})

_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)
MAX_CURSOR = 500  # as the /v1 cursor parameter
_PREFIXES = frozenset({"eq", "ge", "gt", "le", "lt"})


@dataclass(frozen=True)
class Param:
    kind: Kind
    doc: str
    target: str | None = None  # a reference's resource type
    repeats: bool = False  # a date may be given twice: a lower and an upper bound
    typed: bool = False  # a reference read as (type, id) rather than as our id


@dataclass(frozen=True)
class Range:
    """Instants from ``lower`` (inclusive) to ``upper`` (exclusive); None is open."""

    lower: datetime | None = None
    upper: datetime | None = None


@dataclass
class Query:
    values: dict[str, Any] = field(default_factory=dict)
    count: int = DEFAULT_LIMIT
    cursor: str | None = None

    def get(self, name: str) -> Any:
        return self.values.get(name)


def read(request: Request, params: Mapping[str, Param]) -> Query:
    args = request.get_args(keep_blank_values=True)
    query = Query()
    for name, given in args.items():
        if name in PAGING:
            _paging(query, name, given)
            continue
        base, _, modifier = name.partition(":")
        if base not in params:
            known = ", ".join(sorted([*params, "_count", "_cursor"]))
            raise BadRequest(f"unknown search parameter {name!r}; this search takes {known}")
        if modifier:
            raise BadRequest(f"the modifier :{modifier} is not supported")
        param = params[base]
        if len(given) > 1 and not param.repeats:
            raise BadRequest(f"give {name} once")
        if param.kind == "date":
            query.values[name] = date_range(name, given)
        elif param.typed:
            query.values[name] = typed_reference(name, given[0])
        elif param.kind == "reference":
            query.values[name] = reference(name, given[0], param.target)
        else:
            query.values[name] = token(name, given[0])
    return query


def _paging(query: Query, name: str, given: list[str]) -> None:
    if len(given) > 1:
        raise BadRequest(f"give {name} once")
    value = given[0]
    if name == "_count":
        if not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise BadRequest("_count is a whole number from 1")
        query.count = min(int(value), MAX_LIMIT)
    elif name == "_cursor":
        if not value or len(value) > MAX_CURSOR:
            raise BadRequest("_cursor is not a cursor this server issued")
        query.cursor = value
    elif value not in JSON_FORMATS:
        raise BadRequest("this server answers JSON only (_format=json)")


def reference(name: str, value: str, target: str | None) -> uuid.UUID:
    """``Type/id``, a bare id, or a URL ending in ``Type/id``: the id (ours are UUIDs)."""
    parts = value.rstrip("/").split("/")
    kind, id_ = (parts[-2], parts[-1]) if len(parts) >= 2 else (target, parts[-1])
    if target is not None and kind != target:
        raise BadRequest(f"{name} names a {target}: {target}/<id>")
    found = our_id(id_)
    if found is None:
        raise BadRequest(f"{name}: {id_!r} is not an id of this server")
    return found


def typed_reference(name: str, value: str) -> tuple[str, str]:
    """``Type/id`` (or a URL ending so): the type and the id."""
    parts = value.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        raise BadRequest(f"{name} is a reference: Type/<id>")
    return parts[-2], parts[-1]


def token(name: str, value: str) -> tuple[str | None, list[str]]:
    """``code``, ``system|code`` or ``|code``; a comma gives several codes (any matches)."""
    system, bar, codes = value.rpartition("|")
    found = [code for code in codes.split(",") if code]
    if not found:
        raise BadRequest(f"{name} needs a code")
    return (system if bar else None), found


def date_range(name: str, values: list[str]) -> Range:
    """The instants every value allows (``ge``/``gt``/``le``/``lt``/``eq`` prefixes, at
    the precision given: ``ge2026-12-01`` starts at that day, ``lt2026-12-01`` ends
    before it). A value without a zone is read in UTC."""
    lower: datetime | None = None
    upper: datetime | None = None
    for value in values:
        prefix = value[:2] if value[:2].isalpha() else "eq"
        if prefix not in _PREFIXES:
            raise BadRequest(f"{name}: the prefix {prefix!r} is not supported")
        start, end = _period(name, value[2:] if value[:2].isalpha() else value)
        low, high = {
            "eq": (start, end),
            "ge": (start, None),
            "gt": (end, None),
            "lt": (None, start),
            "le": (None, end),
        }[prefix]
        if low is not None:
            lower = low if lower is None else max(lower, low)
        if high is not None:
            upper = high if upper is None else min(upper, high)
    return Range(lower, upper)


def _period(name: str, text: str) -> tuple[datetime, datetime]:
    """The instants a date, dateTime or instant covers: [start, end)."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise BadRequest(f"{name}: {text!r} is not a FHIR date (YYYY-MM-DDThh:mm:ssZ)")
    parts = match.groupdict()
    try:
        zone = _zone(parts["zone"])
        year, month, day = int(parts["year"]), int(parts["month"] or 1), int(parts["day"] or 1)
        if not 1900 <= year < 2200:
            raise ValueError(year)
        fraction = (parts["fraction"] or "").ljust(6, "0")[:6]
        start = datetime(
            year,
            month,
            day,
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction or 0),
            tzinfo=zone,
        )
    except ValueError as exc:
        raise BadRequest(f"{name}: {text!r} is not a valid date") from exc
    if parts["fraction"] or parts["second"]:
        step = timedelta(microseconds=1) if parts["fraction"] else timedelta(seconds=1)
    elif parts["minute"]:
        step = timedelta(minutes=1)
    elif parts["day"]:
        step = timedelta(days=1)
    elif parts["month"]:
        next_month = start.replace(day=28) + timedelta(days=4)
        return start, next_month.replace(day=1)
    else:
        return start, start.replace(year=year + 1)
    return start, start + step


def _zone(text: str | None) -> timezone:
    if not text or text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError(text)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def next_link(request: Request, cursor: str) -> str:
    """This search again, from ``cursor`` on."""
    args = [(k, v) for k, vs in request.get_args(keep_blank_values=True).items() for v in vs]
    args = [(k, v) for k, v in args if k != "_cursor"] + [("_cursor", cursor)]
    return f"{base_url(request)}{request.path[len(BASE) :]}?{urlencode(args)}"


def self_link(request: Request) -> str:
    query = f"?{request.query_string}" if request.query_string else ""
    return f"{base_url(request)}{request.path[len(BASE) :]}{query}"


def base_url(request: Request) -> str:
    """The facade's base from the configured public URL, relative without one (G5: from
    the Host header, a client could point every link at a server of its choosing)."""
    return f"{services(request).settings.public_base_url}{BASE}"

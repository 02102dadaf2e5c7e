"""Structured JSON logs (structlog over the standard library), optionally to a daily file.

Request-scoped fields (request id, user id) are bound with structlog's contextvars so
every line logged while serving a request carries them.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys

import orjson
import structlog

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
    structlog.processors.format_exc_info,
]


def _json(_: object, __: str, event: structlog.types.EventDict) -> str:
    return orjson.dumps(event, default=str).decode()


def configure_logging(level: str = "INFO", log_file: str | None = None) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _json],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file:
        handlers.append(
            logging.handlers.TimedRotatingFileHandler(
                log_file, when="midnight", backupCount=14, utc=True, encoding="utf-8"
            )
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Sanic's own access log duplicates ours; its errors still reach the root logger.
    logging.getLogger("sanic.access").disabled = True

    structlog.configure(
        # Filter first: a line below the level costs nothing (the access log is hot).
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)  # type: ignore[no-any-return]

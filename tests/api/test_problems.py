"""What an unexpected failure looks like: a bare 500 problem, logged with its request id."""

from __future__ import annotations

import json
import logging
import logging.handlers
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog

from amrutam.infra.logs import configure_logging, get_logger
from api.problems import response_for


def _request() -> Any:
    return SimpleNamespace(path="/v1/x", ctx=SimpleNamespace(request_id="rid-123"))


def test_unexpected_errors_reveal_nothing_and_are_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "amrutam.log"
    configure_logging("INFO", str(log_file))
    response = response_for(_request(), RuntimeError("password=hunter2 at /srv/secret.py"))
    assert response.status == 500
    body = json.loads(response.body)
    assert body["request_id"] == "rid-123"
    assert "hunter2" not in response.body.decode()
    assert "secret" not in body["detail"]
    for handler in logging.getLogger().handlers:
        handler.flush()
    line = json.loads(log_file.read_text().strip().splitlines()[-1])
    assert line["event"] == "request.unhandled_error"
    assert line["level"] == "error"


def test_log_lines_are_json_with_bound_context(tmp_path: Path) -> None:
    log_file = tmp_path / "daily.log"
    configure_logging("INFO", str(log_file))
    structlog.contextvars.bind_contextvars(request_id="abc")
    get_logger("test").info("hello", answer=42)
    get_logger("test").debug("not at INFO")
    structlog.contextvars.clear_contextvars()
    for handler in logging.getLogger().handlers:
        handler.flush()
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert lines == [
        {**lines[0], "event": "hello", "answer": 42, "request_id": "abc", "level": "info"}
    ]
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    assert isinstance(handlers[0], logging.handlers.TimedRotatingFileHandler)
    assert handlers[0].when == "MIDNIGHT"

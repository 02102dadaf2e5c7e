"""The SLO gate passes a fast service and fails one whose reads got 300 ms slower."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from amrutam.dev.servers import free_port
from tests.servers import ROOT

HERE = Path(__file__).parent


def _gate(tmp_path: Path, delay_ms: int, read_status: int = 200) -> tuple[int, dict[str, Any]]:
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, str(HERE / "stub_api.py"), str(port), str(delay_ms), str(read_status)]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.post(f"http://127.0.0.1:{port}/write", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(HERE / "gate_locustfile.py"),
                "--headless",
                "-u",
                "5",
                "-r",
                "5",
                "-t",
                "6s",
                "--only-summary",
                "--host",
                f"http://127.0.0.1:{port}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "SLO_RESULTS": str(tmp_path)},
        )
    finally:
        stub.terminate()
        stub.wait()
    return run.returncode, json.loads((tmp_path / "slo.json").read_text())


def test_gate_passes_a_fast_service(tmp_path: Path) -> None:
    code, result = _gate(tmp_path, delay_ms=0)
    assert result["ok"], result
    assert code == 0
    assert result["figures"]["requests"] > 50
    assert (tmp_path / "slo-p95.png").stat().st_size > 1000


def test_gate_fails_when_reads_slow_down(tmp_path: Path) -> None:
    delay_ms = 300
    code, result = _gate(tmp_path, delay_ms=delay_ms)
    assert code == 1
    assert not result["ok"]
    assert any(m.startswith("read p95") for m in result["missed"])
    assert result["figures"]["read_p95_ms"] >= delay_ms


def test_gate_fails_on_errors_and_still_writes_its_verdict(tmp_path: Path) -> None:
    """Missing the error-rate target crashed the gate (a KeyError in the message), so no
    verdict was written."""
    code, result = _gate(tmp_path, delay_ms=0, read_status=500)
    assert code == 1
    assert any(m.startswith("error rate") for m in result["missed"])

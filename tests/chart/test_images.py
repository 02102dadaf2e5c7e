"""The images the chart deploys, read from the Dockerfile (no image is built here; the
built images are booted and compared by `make image-test`, tests/images)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]


def stages() -> tuple[dict[str, str], dict[str, list[str]]]:
    """The global ARG defaults, and each named stage's instructions."""
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    defaults: dict[str, str] = {}
    found: dict[str, list[str]] = {}
    current: str | None = None
    for item in parser.structure:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            current = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else words[0]
            found.setdefault(current, [])
        elif current is None and item["instruction"] == "ARG":
            name, _, value = item["value"].partition("=")
            defaults[name] = value
        elif current is not None:
            found[current].append(f"{item['instruction']} {item['value']}")
    return defaults, found


def test_both_images_carry_the_same_pgbackrest_the_suite_runs_against() -> None:
    """pgBackRest's TLS protocol requires one version at both ends (backup Jobs run the
    application image against the server in the PostgreSQL image)."""
    defaults, found = stages()
    for stage in ("runtime", "postgresql"):
        instructions = found[stage]
        installs = [i for i in instructions if i.startswith("RUN") and "pgbackrest" in i]
        assert installs, stage
        pinned = re.findall(r"apt-get install[^&;]*?([^\s;]*pgbackrest[^\s;]*)", " ".join(installs))
        assert pinned == ['"pgbackrest=${PGBACKREST_VERSION}"'], (stage, pinned)
        assert "ARG PGBACKREST_VERSION" in instructions, stage  # the global value, inherited
    local = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "pgbackrest"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert defaults["PGBACKREST_VERSION"] == local

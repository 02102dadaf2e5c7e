"""Rendering pgBackRest's and PostgreSQL's configuration from the templates in backup/."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template
from typing import Any, Literal

_PACKAGED = Path(__file__).parent / "templates"  # where a wheel carries backup/
_SOURCE = Path(__file__).resolve().parents[2] / "backup"


def template(name: str) -> Template:
    folder = _PACKAGED if _PACKAGED.is_dir() else _SOURCE
    return Template((folder / name).read_text())


@dataclass(frozen=True)
class RepoConfig:
    """One stanza: the database it backs up, and where the repository is."""

    stanza: str
    repo_path: str
    pg_path: str
    pg_port: int
    pg_socket: str
    log_path: str
    lock_path: str
    spool_path: str
    pg_user: str = "postgres"
    window_days: int = 7
    repo_type: Literal["posix", "s3"] = "posix"
    s3_bucket: str = ""
    s3_endpoint: str = ""
    s3_region: str = ""
    s3_uri_style: str = "path"
    s3_port: int = 443
    s3_verify_tls: str = "y"

    def render(self) -> str:
        return template(f"pgbackrest-{self.repo_type}.conf").substitute(asdict(self))


def archiving_settings(config_file: Path, stanza: str) -> str:
    """postgresql.conf lines that archive WAL through pgBackRest."""
    return template("postgresql-archiving.conf").substitute(config=config_file, stanza=stanza)


def prepare_local(root: Path, stanza: str, pg_path: Path, pg_port: int, **repo: Any) -> Path:
    """A repository configuration under ``root`` for a local PostgreSQL (posix by default,
    ``repo`` overrides e.g. ``repo_type="s3"``): folders owned by the ``postgres`` user,
    the configuration written; returns the configuration file."""
    from amrutam.infra.system import chown_to_postgres

    for sub in ("", "repo", "log", "lock", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        chown_to_postgres(root / sub)
    settings: dict[str, Any] = {"repo_path": str(root / "repo"), **repo}
    config = RepoConfig(
        stanza=stanza,
        pg_path=str(pg_path),
        pg_port=pg_port,
        pg_socket=str(pg_path),
        log_path=str(root / "log"),
        lock_path=str(root / "lock"),
        spool_path=str(root / "spool"),
        **settings,
    )
    path = root / "pgbackrest.conf"
    path.write_text(config.render())
    chown_to_postgres(path)
    return path


def render(name: str, **values: object) -> str:
    """Any template of backup/ (e.g. the TLS repository-host pair) with its values."""
    return template(name).substitute(values)

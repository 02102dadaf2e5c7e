"""S3 through the pod's cloud identity (IRSA): what the built Jobs hand to pgBackRest.

No STS is reachable here, so this proves the half that is ours: the repository options a
web-id BackupSchedule's Job passes make pgBackRest sign with the web identity the EKS
webhook injects (AWS_ROLE_ARN and the projected token file), and with no static keys.
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import yaml
from amrutam_operator import manifests

ROOT = Path(__file__).resolve().parents[2]


def web_id_schedule() -> dict[str, object]:
    doc = yaml.safe_load((ROOT / "operator" / "examples" / "backupschedule.yaml").read_text())
    spec = copy.deepcopy(doc["spec"])
    del spec["repo"]["s3"]["credentialsSecretRef"]
    spec["repo"]["s3"]["keyType"] = "web-id"
    spec["serviceAccountName"] = "amrutam-backup"
    return spec


def info(command: list[str], env: dict[str, str], tmp: Path) -> str:
    """`pgbackrest info` with the Job's repository options and its environment."""
    options = [part for part in command if part.startswith(("--repo1-", "--stanza="))]
    run = subprocess.run(
        ["pgbackrest", f"--log-path={tmp}", f"--lock-path={tmp}", *options, "info"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return run.stdout + run.stderr


def test_a_web_id_backup_job_signs_with_the_identity_the_eks_webhook_injects(
    tmp_path: Path,
) -> None:
    job = manifests.backup_job_spec("amrutam-full", web_id_schedule(), "full")
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "amrutam-backup"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert not [e for e in container["env"] if "S3_KEY" in e["name"]]
    env.pop("PGBACKREST_CONFIG")  # (the chart's ConfigMap; its repository is overridden)

    # Without the webhook's variables pgBackRest says what it is missing...
    assert "'AWS_ROLE_ARN' and 'AWS_WEB_IDENTITY_TOKEN_FILE' are not set" in info(
        container["command"], env, tmp_path
    )
    # ...and with them it reads the projected token (here absent) to call STS.
    token = tmp_path / "token"
    identity = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/x"}
    identity["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(token)
    assert f"unable to open missing file '{token}'" in info(
        container["command"], env | identity, tmp_path
    )

"""The chart's alert and recording rules under promtool, the tool made for them: the
rendered PrometheusRule passes `promtool check rules`, and `promtool test rules` feeds
series to it and asserts which alerts fire, when, with what labels, and that healthy
series fire nothing."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.chart.rendering import of_kind, render
from tests.chart.test_chart import MONITORING

BKS = {"namespace": "amrutam", "name": "amrutam"}


@cache
def rules() -> dict[str, Any]:
    (rule,) = of_kind(render(MONITORING), "PrometheusRule")
    return dict(rule["spec"])


def _rule(name: str) -> dict[str, Any]:
    found = [r for g in rules()["groups"] for r in g["rules"] if r.get("alert") == name]
    assert found, name
    return found[0]


def fires(alert: str, /, **labels: str) -> dict[str, Any]:
    """An alert as promtool must see it: the rule's labels and annotations, these labels."""
    rule = _rule(alert)
    annotations = {
        key: value.replace("{{ $labels.condition }}", labels.get("condition", ""))
        for key, value in rule.get("annotations", {}).items()
    }
    return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}


def condition(type_: str, status: str, values: str) -> dict[str, str]:
    labels = ",".join(f'{k}="{v}"' for k, v in {**BKS, "condition": type_}.items())
    return {"series": f'amrutam_backup_condition{{{labels},status="{status}"}}', "values": values}


def case(series: list[dict[str, str]], at: str, name: str, *alerts: dict[str, Any]) -> Any:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": list(alerts)}],
    }


def series(metric: str, values: str, /, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def latency(methods: str, fast: int, per_minute: int = 60) -> list[dict[str, str]]:
    """Requests of these methods, ``fast`` of every ``per_minute`` under the SLO bound."""
    bound = "0.2" if "GET" in methods else "0.5"
    name = "amrutam_http_request_duration_seconds"
    return [
        series(f"{name}_bucket", f"0+{fast}x480", method=methods, le=bound),
        series(f"{name}_count", f"0+{per_minute}x480", method=methods),
    ]


def cases() -> list[Any]:
    finished = series(
        "amrutam_backup_last_finished_timestamp_seconds", "0x1700", **BKS, type="full"
    )  # the newest backup finished at 0 s; the limit is 26 h
    reconciled = "amrutam_operator_reconciliations_total"
    read_fast, read_slow = "AmrutamReadLatencyBudgetFastBurn", "AmrutamReadLatencyBudgetSlowBurn"
    write_fast = "AmrutamWriteLatencyBudgetFastBurn"
    not_ready = [condition("Ready", "True", "1x10 0x50")]  # False or Unknown from 10 min
    return [
        # Ready False or Unknown for 30 minutes pages, whatever the reason (N10).
        case(not_ready, "35m", "AmrutamBackupsNotReady"),
        case(not_ready, "45m", "AmrutamBackupsNotReady", fires("AmrutamBackupsNotReady", **BKS)),
        case([condition("Ready", "True", "1x60")], "45m", "AmrutamBackupsNotReady"),
        case(
            [condition("WALArchiving", "False", "0x5 1x20")],
            "20m",
            "AmrutamWALArchivingFailing",
            fires("AmrutamWALArchivingFailing", **BKS),
        ),
        case([condition("WALArchiving", "False", "0x30")], "20m", "AmrutamWALArchivingFailing"),
        case(
            [
                condition("WindowMet", "False", "1x40"),
                condition("RestoreVerified", "False", "0x40"),
            ],
            "35m",
            "AmrutamNotRecoverable",
            fires("AmrutamNotRecoverable", **BKS, condition="WindowMet"),
        ),
        case([finished], "27h", "AmrutamBackupStale", fires("AmrutamBackupStale", **BKS)),
        case([finished], "25h", "AmrutamBackupStale"),
        case([], "16m", "AmrutamOperatorAbsent", fires("AmrutamOperatorAbsent")),
        case(
            [series(reconciled, "0+1x30", kind="BackupSchedule", result="success")],
            "16m",
            "AmrutamOperatorAbsent",
        ),
        case(
            [series(reconciled, "0+1x40", kind="BackupSchedule", result="failure")],
            "35m",
            "AmrutamOperatorFailing",
            fires("AmrutamOperatorFailing", kind="BackupSchedule", result="failure"),
        ),
        case(
            [series(reconciled, "0x40", kind="BackupSchedule", result="failure")],
            "35m",
            "AmrutamOperatorFailing",
        ),
        # Every read slower than the bound: the fast burn pages, the slow one tickets.
        case(latency("GET", 0), "70m", read_fast, fires(read_fast)),
        case(latency("GET", 0), "70m", read_slow, fires(read_slow)),
        # 40 % slow: six times the 5 % budget but not fourteen: a ticket, no page.
        case(latency("GET", 36), "7h", read_fast),
        case(latency("GET", 36), "7h", read_slow, fires(read_slow)),
        case(latency("GET", 60), "7h", read_slow),  # all fast
        case(latency("POST", 0), "70m", write_fast, fires(write_fast)),
        case(latency("POST", 60), "70m", write_fast),
        case(
            latency("POST", 0),
            "70m",
            "AmrutamWriteLatencyBudgetSlowBurn",
            fires("AmrutamWriteLatencyBudgetSlowBurn"),
        ),
    ]


def promtool(*args: str, cwd: Path) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool comes with Debian's prometheus package (make install)"
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_rendered_rules_pass_promtools_check(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules()))
    assert "SUCCESS" in promtool("check", "rules", "rules.yaml", cwd=tmp_path)


def test_each_alert_fires_on_the_series_that_should_fire_it_and_only_then(
    tmp_path: Path,
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules()))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases()}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    tested = {t["alert_rule_test"][0]["alertname"] for t in tests["tests"]}
    alerts = {r["alert"] for g in rules()["groups"] for r in g["rules"] if "alert" in r}
    assert tested == alerts  # every alert has its cases

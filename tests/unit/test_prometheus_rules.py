"""deploy/prometheus/alerts.yml: valid rules over the names /metrics exports, passing their promtool unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
EXPORTED = ("tuneforge_queue_depth", "tuneforge_running_jobs", "tuneforge_jobs", "tuneforge_job_outcomes_total",
            "tuneforge_job_duration_seconds_bucket", "tuneforge_alerts_total", "tuneforge_heartbeat_age_seconds",
            "tuneforge_disk_free_bytes", "up")


def names_in(expr: str) -> set[str]:
    return {n for n in re.findall(r"\b(tuneforge_\w+|up)\b", expr)}


def test_rules_use_only_exported_metrics():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {"TuneforgeQueueTooDeep", "TuneforgeHighFailureRate", "TuneforgeNoWorkerHeartbeat"} <= {r["alert"] for r in rules}
    for rule in rules:
        assert names_in(rule["expr"]) and names_in(rule["expr"]) <= set(EXPORTED), rule["alert"]
        assert rule["annotations"]["summary"] and rule["labels"]["severity"] in ("warning", "critical")


def test_the_grafana_dashboard_queries_exported_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "tuneforge.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 8 and all(names_in(e) and names_in(e) <= set(EXPORTED) for e in exprs)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) is not installed")
def test_promtool_checks_the_rules_and_runs_their_unit_tests():
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stdout + check.stderr
    test = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=RULES.parent, capture_output=True,
                          text=True, timeout=60)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr

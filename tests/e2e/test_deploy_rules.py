"""Prometheus rules and Alertmanager config under deploy/: promtool and amtool checks.

`promtool test rules` runs the unit tests in deploy/prometheus/tests/ (firing and not-firing
cases for every alert; the values of the Sloth-compatible recording rules). The tools come
from Debian's `prometheus` and `prometheus-alertmanager` packages, which
scripts/install-system-deps installs. A missing tool fails these tests, unless
SLAWATCH_ALLOW_MISSING_TOOLS=1, which turns that into a skip.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules"
RULE_TESTS = PROM / "tests"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"

SLOTH_SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d")
SLOTH_META = (
    "slo:objective:ratio",
    "slo:error_budget:ratio",
    "slo:current_burn_rate:ratio",
    "slo:period_burn_rate:ratio",
    "slo:period_error_budget_remaining:ratio",
)


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def load_groups(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    groups: list[dict[str, Any]] = data["groups"]
    return groups


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in load_groups(RULES / "slawatch-alerts.yml") for r in g["rules"]]


def recording_rules() -> list[dict[str, Any]]:
    return [r for g in load_groups(RULES / "slawatch-slo.yml") for r in g["rules"]]


# --- promtool --------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool", "prometheus")
    files = sorted(str(p) for p in RULES.glob("*.yml"))
    assert len(files) == 2
    res = run([promtool, "check", "rules", *files])
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("test_file", ["slawatch-alerts.test.yml", "slawatch-slo.test.yml"])
def test_promtool_rule_unit_tests(test_file: str) -> None:
    promtool = require_tool("promtool", "prometheus")
    res = run([promtool, "test", "rules", test_file], cwd=RULE_TESTS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_check_config() -> None:
    promtool = require_tool("promtool", "prometheus")
    res = run([promtool, "check", "config", str(PROM / "prometheus.yml")])
    assert res.returncode == 0, res.stdout + res.stderr


# --- what the rules promise, checked on the files ----------------------------------------------


def test_alerts_cover_the_issue() -> None:
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    assert "slawatch_service_trending_below_sla" in exprs["SlawatchServiceTrendingBelowSLA"]
    assert "== 2" in exprs["SlawatchServiceSLABreached"]
    assert "slawatch_service_kpi_gap" in exprs["SlawatchServiceKPIGap"]
    outage = exprs["SlawatchServiceOutageExceedsRestoreTime"]
    assert "slawatch_service_outage_seconds" in outage
    assert "slawatch_service_restore_target_seconds" in outage
    assert exprs["SlawatchNotReporting"].startswith("absent(")
    assert 'up{job="slawatch"} == 0' in exprs["SlawatchWorkerDown"]


def test_every_alert_has_severity_service_kind_and_annotations() -> None:
    for rule in alert_rules():
        labels = rule.get("labels", {})
        assert labels.get("severity") in {"page", "ticket"}, rule["alert"]
        expr = " ".join(rule["expr"].split())
        # either the expression keeps service and kind, or the rule sets them
        from_expr = "by (service, kind)" in expr
        assert from_expr or {"service", "kind"} <= labels.keys(), rule["alert"]
        ann = rule["annotations"]
        assert ann.get("summary") and ann.get("description"), rule["alert"]
        if from_expr:
            for key in ("customers", "burn_rate", "blamed_components"):
                assert key in ann, (rule["alert"], key)
            assert "slawatch_service_info" in ann["customers"]
            assert "slawatch_service_downtime_by_component_seconds" in ann["blamed_components"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    suite = yaml.safe_load((RULE_TESTS / "slawatch-alerts.test.yml").read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names <= firing, names - firing
    assert names <= quiet, names - quiet


def test_recording_rules_have_sloth_names_and_labels() -> None:
    rules = recording_rules()
    names = [r["record"] for r in rules]
    expected = [f"slo:sli_error:ratio_rate{w}" for w in SLOTH_SLI_WINDOWS]
    expected += [*SLOTH_META, "sloth_slo_info"]
    assert sorted(names) == sorted(expected)
    for rule in rules:
        assert rule["labels"]["sloth_slo"] == "sla-availability"
        expr = rule["expr"]
        assert '"sloth_service", "$1", "service"' in expr, rule["record"]
        assert '"sloth_id", "$1-sla-availability", "service"' in expr, rule["record"]
        m = re.fullmatch(r"slo:sli_error:ratio_rate(\w+)", rule["record"])
        if m:
            assert rule["labels"]["sloth_window"] == m.group(1)
            if m.group(1) != "2h":  # 2h: slawatch has no such window (see the rule file)
                assert f'window="{m.group(1)}"' in expr


# --- Alertmanager ----------------------------------------------------------------------------


def test_amtool_check_config() -> None:
    amtool = require_tool("amtool", "prometheus-alertmanager")
    res = run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "service=email", "kind=external"], "page"),
        (["severity=ticket", "service=email", "kind=external"], "ticket"),
        (["alertname=SomethingElse"], "ticket"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    amtool = require_tool("amtool", "prometheus-alertmanager")
    res = run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels])
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == [receiver]

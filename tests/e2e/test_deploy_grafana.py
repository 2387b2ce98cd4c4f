"""The provisioned Grafana board: it parses, every query names only metrics slawatch exports
(CONTRACT §4, plus `up` and the recording rules of deploy/prometheus/rules/), every query is
valid PromQL (checked by promtool as a recording rule), and every panel has a datasource.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "slawatch.json"
SLO_RULES = ROOT / "deploy" / "prometheus" / "rules" / "slawatch-slo.yml"

# CONTRACT §4 and §6, the metric tables: the only names a query may use (besides `up` and ours).
CONTRACT_METRICS = frozenset(
    {
        "slawatch_service_info",
        "slawatch_service_up",
        "slawatch_service_maintenance",
        "slawatch_service_in_service_time",
        "slawatch_service_scheduled_maintenance",
        "slawatch_service_availability_ratio",
        "slawatch_service_sla_availability_ratio",
        "slawatch_service_sla_target_ratio",
        "slawatch_service_burn_rate",
        "slawatch_service_error_budget_remaining_ratio",
        "slawatch_service_error_budget_exhaustion_seconds",
        "slawatch_service_trending_below_sla",
        "slawatch_service_sla_status",
        "slawatch_service_outage_seconds",
        "slawatch_service_restore_target_seconds",
        "slawatch_service_outages_total",
        "slawatch_service_downtime_seconds_total",
        "slawatch_service_supported_availability_ratio",
        "slawatch_service_kpi_gap",
        "slawatch_service_downtime_by_component_seconds",
        "slawatch_component_up",
        "slawatch_component_availability_ratio",
        "slawatch_component_kpi_target_ratio",
        "slawatch_events_total",
        "slawatch_unmapped_components",
    }
)
CONTRACT_WINDOWS = ("5m", "30m", "1h", "6h", "1d", "3d", "7d", "30d")

PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    }
)
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def recorded_names() -> frozenset[str]:
    data = yaml.safe_load(SLO_RULES.read_text())
    return frozenset(r["record"] for g in data["groups"] for r in g["rules"] if "record" in r)


def allowed_metrics() -> frozenset[str]:
    return CONTRACT_METRICS | {"up"} | recorded_names()


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels left out)."""
    s = re.sub(r"\$\{[^}]*\}|\$\w+", "", expr)  # Grafana variables
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', s)  # string literals
    s = re.sub(r"\{[^{}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\[\]]*\]", "", s)  # ranges and subqueries
    s = re.sub(r"\boffset\s+-?\w+", "", s)
    s = GROUPING.sub("", s)
    s = re.sub(r"(?<![A-Za-z_:])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", "", s)  # numbers
    names = set()
    for m in IDENT.finditer(s):
        word = m.group(0)
        rest = s[m.end() :].lstrip()
        if word.lower() in PROMQL_KEYWORDS or rest.startswith("("):
            continue  # a keyword, a function or an aggregation
        names.add(word)
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (outcome) (rate(slawatch_events_total{outcome=~"a|b"}[$__rate_interval])) '
        "/ on (service) group_left (customers) max by (service, customers) (slawatch_service_info)"
        ' > 14.4 * 1e-3 or label_replace(up, "x", "$1", "job", "(.*)") offset 5m'
        ' or max(foo{a="b"}) by (x)'
    )
    assert metric_names(expr) == {"slawatch_events_total", "slawatch_service_info", "up", "foo"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target, annotation and query variable."""
    for p in all_panels(board["panels"]):
        for t in p.get("targets", []):
            yield f"panel {p['title']!r} target {t.get('refId')}", t["expr"]
    for a in board.get("annotations", {}).get("list", []):
        if "expr" in a:
            yield f"annotation {a['name']!r}", a["expr"]
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
            assert m, q
            yield f"variable {v['name']}", m.group(1)


def test_dashboard_parses_and_has_identity() -> None:
    board = dashboard()
    assert board["uid"] == "slawatch"
    assert board["title"]
    ids = [p["id"] for p in all_panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in all_panels(board["panels"]):
        assert {"x", "y", "w", "h"} <= p["gridPos"].keys(), p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]


def test_every_query_names_only_exported_metrics() -> None:
    allowed = allowed_metrics()
    seen: set[str] = set()
    for where, expr in queries(dashboard()):
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= allowed, f"{where}: {sorted(names - allowed)} not exported by slawatch"
        seen |= names
        for window in re.findall(r'window=~?"([^"]*)"', expr):
            for w in window.split("|"):
                assert w in CONTRACT_WINDOWS, f"{where}: window {w!r}"
    # the board shows what the issue asks for
    for needed in (
        "slawatch_service_sla_status",
        "slawatch_service_up",
        "slawatch_service_availability_ratio",
        "slawatch_service_sla_target_ratio",
        "slawatch_service_error_budget_remaining_ratio",
        "slawatch_service_burn_rate",
        "slawatch_service_outage_seconds",
        "slawatch_service_downtime_by_component_seconds",
        "slawatch_service_supported_availability_ratio",
        "slawatch_service_kpi_gap",
        "slawatch_events_total",
        "slawatch_unmapped_components",
    ):
        assert needed in seen, needed


def test_every_panel_has_a_datasource() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in all_panels(board["panels"]):
        if p["type"] == "row":
            continue
        ds = p.get("datasource")
        assert ds and ds.get("uid") == "${datasource}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t.get("datasource", ds) == ds, p["title"]
            assert t["expr"].strip(), p["title"]


def test_template_variables_for_service_and_kind() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    for name in ("service", "kind"):
        v = variables[name]
        assert v["type"] == "query" and v["includeAll"] and v["multi"], name
    assert "$kind" in variables["service"]["query"]["query"]
    # every service-level query follows the variables
    for where, expr in queries(dashboard()):
        if "slawatch_service_" in expr and where.startswith("panel"):
            assert '"$service"' in expr, where


def test_external_services_come_first() -> None:
    """Range results are sorted by label set; `kind` sorts before `service` and "external"
    before "internal", so grouping by (kind, service) lists external services first."""
    board = dashboard()
    status = next(p for p in all_panels(board["panels"]) if p["title"] == "SLA status")
    assert "max by (kind, service)" in status["targets"][0]["expr"]
    assert "external" < "internal" and "kind" < "service"
    table = next(p for p in all_panels(board["panels"]) if p["title"] == "Services")
    sort = next(t for t in table["transformations"] if t["id"] == "sortBy")
    assert sort["options"]["sort"][0] == {"field": "kind", "desc": False}


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, as a recording rule with the variables filled in."""
    promtool = require_tool("promtool", "prometheus")
    rules = []
    for i, (_where, expr) in enumerate(queries(dashboard())):
        concrete = expr.replace("$__rate_interval", "1m").replace("$service", ".*").replace("$kind", ".*")
        rules.append({"record": f"grafana:query_{i}", "expr": concrete})
    path = tmp_path / "grafana-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    res = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_provisioning_matches_the_board_and_compose() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "slawatch.yml").read_text())
    prom = [d for d in ds["datasources"] if d["type"] == "prometheus"]
    assert len(prom) == 1 and prom[0]["url"] == "http://prometheus:9090"
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == prom[0]["uid"]

    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "slawatch.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts

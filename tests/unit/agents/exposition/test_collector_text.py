"""The directly written /metrics text equals prometheus_client's, byte for byte.

``render_report`` exists for speed (a scrape of thousands of services through
prometheus_client's sample objects took seconds); it must not change a single line of
what Prometheus reads: names, help, types, label escaping, value formatting, order.
"""

from __future__ import annotations

import time

import orjson
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.exposition.collector import render_report
from streams.catalog import parse_catalog
from streams.engine import Engine
from tests.support.metrics import families

CATALOG = """
components:
  'web-1': {team: 'web "ops"', kpi: 0.99}
  'web-2': {team: "back\\\\slash"}
  'db:1':  {team: "multi\\nline", kpi: 0.999}
  'lb@edge/1': {kpi: 0.9995}
  'spare': {}
services:
  'shop "main"':
    kind: external
    customers: [buyers, 'partners, eu']
    sla: {target: 0.999, period: 30d}
    restore_time: 30m
    requires: [{any: [web-1, web-2]}, 'db:1', 'lb@edge/1']
  "back\\\\end\\nsvc":
    kind: internal
    customers: []
    sla: {target: 0.99, period: month}
    requires: ['db:1']
  'über':
    kind: internal
    customers: [ops]
    sla: {target: 0.9, period: 1d}
    requires: [{service: 'shop "main"'}, {at_least: 1, of: [web-1, 'lb@edge/1']}]
"""


class _Families:
    def __init__(self, report: object) -> None:
        self.report = report

    def collect(self):  # type: ignore[no-untyped-def]
        return families(self.report)  # type: ignore[arg-type]


def _report(now: float):  # type: ignore[no-untyped-def]
    engine = Engine(parse_catalog(yaml.safe_load(CATALOG), "test"), allowed_lateness=600.0)
    events = [
        ("web-1", "down", now - 7000), ("web-2", "down", now - 6900), ("web-2", "up", now - 6000),
        ("db:1", "maintenance", now - 5000), ("db:1", "up", now - 4000),
        ("lb@edge/1", "down", now - 3000), ("lb@edge/1", "up", now - 10), ("web-1", "up", now - 5),
        ("db:1", "down", now - 1), ("nobody", "down", now - 100), ("spare", "up", now - 50),
    ]
    for comp, state, ts in events:
        engine.apply_raw(orjson.dumps({"component": comp, "state": state, "ts": ts}), now)
    engine.apply_raw(b"not json", now)
    return engine.report(now)


def test_text_equals_prometheus_client() -> None:
    report = _report(time.time())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(report))  # type: ignore[arg-type]
    expected = generate_latest(registry).decode()
    got = render_report(report)
    assert got == expected
    # And it parses: every service and component is there.
    names = {s.name for fam in text_string_to_metric_families(got) for s in fam.samples}
    assert "slawatch_service_availability_ratio" in names
    assert "slawatch_service_outages_total" in names


def test_empty_report() -> None:
    report = _report(time.time())
    report.services.clear()
    report.components.clear()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(report))  # type: ignore[arg-type]
    assert render_report(report) == generate_latest(registry).decode()

"""The metric spec is the one source: the contract's metrics, the README's table and
the collector's text all agree with it."""

from __future__ import annotations

import re
from pathlib import Path

from agents.exposition import spec

ROOT = Path(__file__).resolve().parents[4]


def test_readme_table_is_the_spec() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- metrics:begin -->\n(.*?)<!-- metrics:end -->", readme, re.S)
    assert block, "README.md has no metrics:begin/end block"
    assert block.group(1) == spec.markdown_table(), (
        "README's metric table differs from the spec: run `python -m agents.exposition.spec`")


def test_every_contract_metric_is_in_the_spec() -> None:
    contract = (ROOT / "docs" / "CONTRACT.md").read_text()
    # every metric the contract names, in §4's table and in the prose of later sections
    named = set(re.findall(r"`(slawatch_[a-z0-9_]+)", contract))
    assert len(named) > 20, "the contract's metric names were not found"
    assert named <= set(spec.BY_NAME), sorted(named - set(spec.BY_NAME))


def test_spec_follows_prometheus_conventions() -> None:
    for m in spec.ALL_METRICS:
        assert re.fullmatch(r"slawatch_[a-z0-9_]+", m.name), m.name
        assert m.name.endswith("_total") == (m.type == "counter"), m.name
        if m.type == "gauge" and ("seconds" in m.name or "ratio" in m.name):
            # base units: seconds and ratios, never minutes or percent
            assert not re.search(r"_(minutes|hours|percent)", m.name), m.name
    assert len(spec.BY_NAME) == len(spec.ALL_METRICS), "a metric is in the spec twice"


def test_each_metric_reads_the_report_attribute_named_as_its_suffix() -> None:
    """From a metric name to the number behind it in one hop: ``slawatch_service_X`` is
    ``ServiceReport.X``, ``slawatch_component_X`` ``ComponentReport.X``,
    ``slawatch_X`` (the event families) ``Report.X``; a report attribute renamed
    without its metric (or the reverse) fails here."""
    from streams.report import ComponentReport, Report, ServiceReport

    owner = {"service": ServiceReport, "component": ComponentReport, "events": Report}
    for m in spec.ALL_METRICS:
        if m.scope == "worker":
            assert m.field is None, m.name
            continue
        cls = owner[m.scope]
        assert m.field is not None and hasattr(cls, m.field), (
            f"{m.name} reads {cls.__name__}.{m.field}, which does not exist")

"""prometheus_client families of a report, built generically from the metric spec.

The collector writes its text by hand for speed; these families are the independent
rendering it is compared with (and what the worker tests expect at /metrics). They
read each metric's value through the spec's ``field``, so a metric added to the spec
is checked without writing its rendering twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agents.exposition.spec import COMPONENT_METRICS, EVENT_METRICS, SERVICE_METRICS, MetricSpec
from streams.report import Report
from streams.windows import WINDOWS


def _family(spec: MetricSpec) -> GaugeMetricFamily | CounterMetricFamily:
    cls = CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
    return cls(spec.family, spec.help, labels=list(spec.labels))


def _add(fam: Any, spec: MetricSpec, labels: list[str], value: Any) -> None:
    if spec.name == "slawatch_service_info":
        fam.add_metric([*labels, ",".join(value)], 1.0)
    elif isinstance(value, dict):
        keys = list(WINDOWS) if spec.extra[0] == "window" else sorted(value)
        for k in keys:
            fam.add_metric([*labels, k], float(value[k]))
    elif value is None:  # an optional number not set (restore_time, kpi): no series
        return
    elif isinstance(value, bool):
        fam.add_metric(labels, 1.0 if value else 0.0)
    else:
        fam.add_metric(labels, float(value))


def families(report: Report) -> Iterator[Metric]:
    """Every family of CONTRACT §4 for ``report``, in the collector's order."""
    for spec in SERVICE_METRICS:
        fam = _family(spec)
        for name in sorted(report.services):
            s = report.services[name]
            _add(fam, spec, [s.name, s.kind], getattr(s, str(spec.field)))
        yield fam
    for spec in COMPONENT_METRICS:
        fam = _family(spec)
        for cid in sorted(report.components):
            c = report.components[cid]
            _add(fam, spec, [c.name, c.team or ""], getattr(c, str(spec.field)))
        yield fam
    for spec in EVENT_METRICS:
        fam = _family(spec)
        _add(fam, spec, [], getattr(report, str(spec.field)))
        yield fam

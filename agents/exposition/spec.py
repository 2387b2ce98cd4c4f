"""Every metric slawatch exports, in one table: name, type, help, labels, what it reads.

This is the one source of truth for the metric set. The collector's text heads and its
family order, the prometheus_client families the tests build from a report, and the
metric table in README.md (``python -m agents.exposition.spec``) are all made from it,
so a metric cannot be renamed, re-typed or re-documented in one place and not another.

A metric's value is the attribute of ``streams.report.ServiceReport`` /
``ComponentReport`` (``Report`` for the event families) named as the metric without
its scope's prefix: ``slawatch_service_sla_target_ratio`` is
``ServiceReport.sla_target_ratio``, ``slawatch_events_total`` is
``Report.events_total`` (``MetricSpec.field``; tests/unit/agents/exposition checks that
each exists). The one exception is ``slawatch_service_info``, whose value is 1 and whose
``customers`` label comes from ``ServiceReport.customers``. ``extra`` is the label whose
values are the keys of that attribute when it is a dict (``window``, ``component``,
``outcome``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

Scope = Literal["service", "component", "events", "worker"]

#: The labels every series of a scope carries, in CONTRACT §4's words.
SCOPE_LABELS: dict[str, tuple[str, ...]] = {
    "service": ("service", "kind"),
    "component": ("component", "team"),
    "events": (),
    "worker": (),
}


#: What a metric's name starts with before the report attribute it reads, per scope
#: (the worker's own families read no report).
SCOPE_PREFIX: dict[str, str] = {
    "service": "slawatch_service_",
    "component": "slawatch_component_",
    "events": "slawatch_",
}

#: The info family's value is 1; its ``customers`` label reads this attribute.
INFO_FIELD = "customers"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed, with ``_total`` for counters
    type: Literal["gauge", "counter"]
    help: str
    scope: Scope
    #: Labels beyond the scope's; for a dict field, the first is the one whose values
    #: are its keys.
    extra: tuple[str, ...] = ()

    @property
    def field(self) -> str | None:
        """The report attribute the value is read from: the name after the scope's
        prefix (None for the worker's own families)."""
        if self.name == "slawatch_service_info":
            return INFO_FIELD
        prefix = SCOPE_PREFIX.get(self.scope)
        return None if prefix is None else self.name.removeprefix(prefix)

    @property
    def labels(self) -> tuple[str, ...]:
        """All label names, in CONTRACT §4's order."""
        return (*SCOPE_LABELS[self.scope], *self.extra)

    @property
    def family(self) -> str:
        """The family name prometheus_client is given (``_total`` is added by it)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name

    @property
    def head(self) -> str:
        """The ``# HELP`` and ``# TYPE`` lines of the text format."""
        doc = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} {self.type}\n"


def _g(name: str, help: str, scope: Scope, *extra: str) -> MetricSpec:
    return MetricSpec(name, "gauge", help, scope, extra)


def _c(name: str, help: str, scope: Scope, *extra: str) -> MetricSpec:
    return MetricSpec(name, "counter", help, scope, extra)


#: The service families of CONTRACT §4, in the order they are written.
SERVICE_METRICS: tuple[MetricSpec, ...] = (
    _g("slawatch_service_info", "service metadata (value 1)", "service", "customers"),
    _g("slawatch_service_up", "1 up or maintenance, 0 down", "service"),
    _g("slawatch_service_maintenance", "1 while in planned maintenance", "service"),
    _g("slawatch_service_in_service_time",
       "1 inside the agreed service time (always, for a service agreed 24x7)", "service"),
    _g("slawatch_service_scheduled_maintenance",
       "1 while a maintenance window naming the service or a component it requires is open",
       "service"),
    _g("slawatch_service_availability_ratio", "up / (up + down) over the window ending now",
       "service", "window"),
    _g("slawatch_service_sla_availability_ratio", "availability over the SLA period", "service"),
    _g("slawatch_service_sla_target_ratio", "the SLA target", "service"),
    _g("slawatch_service_burn_rate", "(1 - availability) / (1 - target)", "service", "window"),
    _g("slawatch_service_error_budget_remaining_ratio",
       "1 - (1 - sla availability) / (1 - target); may be negative", "service"),
    _g("slawatch_service_error_budget_exhaustion_seconds",
       "seconds until the budget is gone at the last hour's rate", "service"),
    _g("slawatch_service_trending_below_sla",
       "1 when multi-window burn rates say the SLA will be missed", "service"),
    _g("slawatch_service_sla_status", "0 meeting, 1 trending below, 2 breached", "service"),
    _g("slawatch_service_outage_seconds", "length of the current unplanned outage, 0 when up",
       "service"),
    _g("slawatch_service_restore_target_seconds", "restore_time", "service"),
    _c("slawatch_service_outages_total", "unplanned outages begun", "service"),
    _c("slawatch_service_downtime_seconds_total", "unplanned downtime seconds of ended outages",
       "service"),
    _g("slawatch_service_supported_availability_ratio",
       "availability the components' KPIs can carry", "service"),
    _g("slawatch_service_kpi_gap", "1 when supported availability < target", "service"),
    _g("slawatch_service_downtime_by_component_seconds",
       "unplanned downtime in the SLA period attributed to a component", "service", "component"),
)

#: The component families, in the order they are written.
COMPONENT_METRICS: tuple[MetricSpec, ...] = (
    _g("slawatch_component_up", "1 up, 0 down or maintenance", "component"),
    _g("slawatch_component_availability_ratio",
       "availability over the window, maintenance excluded", "component", "window"),
    _g("slawatch_component_kpi_target_ratio", "the component's kpi", "component"),
)

#: The families of the event stream as a whole.
EVENT_METRICS: tuple[MetricSpec, ...] = (
    _c("slawatch_events_total", "component event messages by outcome", "events", "outcome"),
    _g("slawatch_unmapped_components", "distinct unmapped components seen", "events"),
)

#: The worker's own families: they describe this process, not the estate.
WORKER_METRICS: tuple[MetricSpec, ...] = (
    _g("slawatch_worker_ready",
       "1 when this worker owns partitions and its tables are recovered", "worker"),
    _c("slawatch_catalog_reload_errors_total",
       "catalog reloads refused (the previous catalog stayed in force)", "worker"),
    _c("slawatch_catalog_reloads_total", "catalog reloads applied", "worker"),
    _c("slawatch_ingest_requests_total", "HTTP ingestion requests by endpoint and status code",
       "worker", "endpoint", "code"),
    _c("slawatch_ingest_events_total",
       "events accepted over HTTP and published to the input topic", "worker", "endpoint"),
    _g("slawatch_catalog_loaded_timestamp_seconds", "when the catalog in force was loaded",
       "worker"),
)

ALL_METRICS: tuple[MetricSpec, ...] = (
    *SERVICE_METRICS, *COMPONENT_METRICS, *EVENT_METRICS, *WORKER_METRICS)
BY_NAME: dict[str, MetricSpec] = {m.name: m for m in ALL_METRICS}


def markdown_table() -> str:
    """The README's metric table (between its ``metrics:begin``/``end`` markers)."""
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for m in ALL_METRICS:
        labels = ", ".join(f"`{x}`" for x in m.labels)
        rows.append(f"| `{m.name}` | {m.type} | {labels} | {m.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())

"""Prometheus collector: every metric of CONTRACT §4, built fresh at each scrape.

Nothing is kept in prometheus_client's own metric objects: the numbers depend on the
wall clock (windows end at ``now``) and on which partitions this worker owns at that
moment, so they are computed from the tables when scraped. The collector exports only
what this worker actively owns, so the union over workers is the whole set and each
service/component series appears once; counters that are per worker (catalog reload
errors) describe the worker itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString as _float_to_go_string

from slawatch.agents.runtime import Runtime
from slawatch.agents.state import TrackerTable
from slawatch.streams.catalog import Catalog, Component
from slawatch.streams.component import ComponentTracker
from slawatch.streams.report import (
    ComponentReport,
    Report,
    component_lines_until,
    component_report,
)
from slawatch.streams.windows import WINDOWS

SVC = ["service", "kind"]
INGEST_ENDPOINTS = ("events", "alertmanager")
COMP = ["component", "team"]


class SlawatchCollector:
    """A custom collector over a ``Runtime``; register it on an injected registry."""

    def __init__(self, rt: Runtime, clock: Callable[[], float] = time.time) -> None:
        self.rt = rt
        self.clock = clock
        self.component_lines = ComponentLines()

    def describe(self) -> list[Metric]:
        # No fixed description: the series depend on the catalog and ownership.
        return []

    def collect(self) -> Iterator[Metric]:
        """The worker's own metrics. The service and component families are written
        by ``render`` straight to text (``render_report``): through prometheus_client
        a scrape of 2,000 services took 1.5 s, 85% of it building and formatting
        sample objects."""
        yield from self._worker_metrics(self.rt.ready())

    def report_text(self) -> str:
        return "".join(self.report_parts())

    def report_parts(self) -> list[str]:
        """``render_report(rt.report(now))`` in parts whose concatenation is that text;
        the component families come from ``ComponentLines``, which reuses a
        component's lines while they are exactly what a fresh report would give."""
        rt = self.rt
        if not rt.ready():
            # Mid-rebalance or mid-recovery the tables are incomplete: exporting them
            # would show counters going down and outages vanishing. Export nothing.
            return []
        now = self.clock()
        report = rt.report(now, components=False)
        cids = sorted(rt.owned_components())
        return render_parts(report, self.component_lines.render(rt.catalog, rt.components,
                                                                cids, now))

    def _worker_metrics(self, ready: bool) -> Iterator[Metric]:
        c = self.rt.counters
        g = GaugeMetricFamily("slawatch_worker_ready",
                              "1 when this worker owns partitions and its tables are recovered")
        g.add_metric([], 1.0 if ready else 0.0)
        yield g
        r = CounterMetricFamily("slawatch_catalog_reload_errors",
                                "catalog reloads refused (the previous catalog stayed in force)")
        r.add_metric([], float(c.catalog_reload_errors))
        yield r
        ok = CounterMetricFamily("slawatch_catalog_reloads", "catalog reloads applied")
        ok.add_metric([], float(c.catalog_reloads))
        yield ok
        req = CounterMetricFamily("slawatch_ingest_requests",
                                  "HTTP ingestion requests by endpoint and status code",
                                  labels=["endpoint", "code"])
        for endpoint in INGEST_ENDPOINTS:  # export 0 for the series we know exist
            for code in (202, 400, 413, 503):
                req.add_metric([endpoint, str(code)], float(c.ingest_requests.get((endpoint, code), 0)))
        yield req
        ev = CounterMetricFamily("slawatch_ingest_events",
                                 "events accepted over HTTP and published to the input topic",
                                 labels=["endpoint"])
        for endpoint in INGEST_ENDPOINTS:
            ev.add_metric([endpoint], float(c.ingest_events.get(endpoint, 0)))
        yield ev
        t = GaugeMetricFamily("slawatch_catalog_loaded_timestamp_seconds",
                              "when the catalog in force was loaded")
        t.add_metric([], c.catalog_loaded_at)
        yield t


def families(report: Report) -> Iterator[Metric]:
    """Metric families of CONTRACT §4 for one report (also used by tests)."""
    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    info = gauge("slawatch_service_info", "service metadata (value 1)", [*SVC, "customers"])
    up = gauge("slawatch_service_up", "1 up or maintenance, 0 down", SVC)
    maint = gauge("slawatch_service_maintenance", "1 while in planned maintenance", SVC)
    avail = gauge("slawatch_service_availability_ratio",
                  "up / (up + down) over the window ending now", [*SVC, "window"])
    sla_avail = gauge("slawatch_service_sla_availability_ratio",
                      "availability over the SLA period", SVC)
    target = gauge("slawatch_service_sla_target_ratio", "the SLA target", SVC)
    burn = gauge("slawatch_service_burn_rate", "(1 - availability) / (1 - target)",
                 [*SVC, "window"])
    budget = gauge("slawatch_service_error_budget_remaining_ratio",
                   "1 - (1 - sla availability) / (1 - target); may be negative", SVC)
    exhaust = gauge("slawatch_service_error_budget_exhaustion_seconds",
                    "seconds until the budget is gone at the last hour's rate", SVC)
    trending = gauge("slawatch_service_trending_below_sla",
                     "1 when multi-window burn rates say the SLA will be missed", SVC)
    status = gauge("slawatch_service_sla_status", "0 meeting, 1 trending below, 2 breached", SVC)
    outage = gauge("slawatch_service_outage_seconds",
                   "length of the current unplanned outage, 0 when up", SVC)
    restore = gauge("slawatch_service_restore_target_seconds", "restore_time", SVC)
    outages = CounterMetricFamily("slawatch_service_outages", "unplanned outages begun",
                                  labels=SVC)
    downtime = CounterMetricFamily("slawatch_service_downtime_seconds",
                                   "unplanned downtime seconds of ended outages", labels=SVC)
    supported = gauge("slawatch_service_supported_availability_ratio",
                      "availability the components' KPIs can carry", SVC)
    gap = gauge("slawatch_service_kpi_gap", "1 when supported availability < target", SVC)
    blame = gauge("slawatch_service_downtime_by_component_seconds",
                  "unplanned downtime in the SLA period attributed to a component",
                  [*SVC, "component"])

    for name in sorted(report.services):
        s = report.services[name]
        lv = [s.name, s.kind]
        info.add_metric([*lv, ",".join(s.customers)], 1.0)
        up.add_metric(lv, 1.0 if s.up else 0.0)
        maint.add_metric(lv, 1.0 if s.maintenance else 0.0)
        for w in WINDOWS:
            avail.add_metric([*lv, w], s.availability[w])
            burn.add_metric([*lv, w], s.burn_rate[w])
        sla_avail.add_metric(lv, s.sla_availability)
        target.add_metric(lv, s.target)
        budget.add_metric(lv, s.error_budget_remaining)
        exhaust.add_metric(lv, s.error_budget_exhaustion_seconds)
        trending.add_metric(lv, 1.0 if s.trending_below_sla else 0.0)
        status.add_metric(lv, float(s.sla_status))
        outage.add_metric(lv, s.outage_seconds)
        if s.restore_target_seconds is not None:
            restore.add_metric(lv, s.restore_target_seconds)
        outages.add_metric(lv, float(s.outages_total))
        downtime.add_metric(lv, s.downtime_seconds_total)
        supported.add_metric(lv, s.supported_availability)
        gap.add_metric(lv, 1.0 if s.kpi_gap else 0.0)
        for comp in sorted(s.downtime_by_component):
            blame.add_metric([*lv, comp], s.downtime_by_component[comp])
    yield from (info, up, maint, avail, sla_avail, target, burn, budget, exhaust, trending,
                status, outage, restore, outages, downtime, supported, gap, blame)

    c_up = gauge("slawatch_component_up", "1 up, 0 down or maintenance", COMP)
    c_avail = gauge("slawatch_component_availability_ratio",
                    "availability over the window, maintenance excluded", [*COMP, "window"])
    c_kpi = gauge("slawatch_component_kpi_target_ratio", "the component's kpi", COMP)
    for cid in sorted(report.components):
        c = report.components[cid]
        lv = [c.name, c.team or ""]
        c_up.add_metric(lv, 1.0 if c.up else 0.0)
        for w in WINDOWS:
            c_avail.add_metric([*lv, w], c.availability[w])
        if c.kpi is not None:
            c_kpi.add_metric(lv, c.kpi)
    yield from (c_up, c_avail, c_kpi)

    ev = CounterMetricFamily("slawatch_events", "component event messages by outcome",
                             labels=["outcome"])
    for outcome in sorted(report.events):
        ev.add_metric([outcome], float(report.events[outcome]))
    yield ev
    um = gauge("slawatch_unmapped_components", "distinct unmapped components seen", [])
    um.add_metric([], float(report.unmapped_components))
    yield um


#: prometheus_client's float formatting (NaN, +Inf, Go-style exponents), typed.
_fmt: Callable[[float], str] = _float_to_go_string


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _esc_help(doc: str) -> str:
    return doc.replace("\\", "\\\\").replace("\n", "\\n")


def render_report(report: Report) -> str:
    """The families of ``families(report)`` in the text format, written directly.

    Same names, help, types, labels, values and order as prometheus_client writes them
    (tests/test_collector_text.py compares the two); label values are escaped once per
    service or component instead of once per sample.
    """
    comps = [report.components[c] for c in sorted(report.components)]
    return "".join(render_parts(report, [component_text(comps)]))


def render_parts(report: Report, component_parts: list[str]) -> list[str]:
    """``render_report`` in parts, with the component families (of
    ``component_text`` or ``ComponentLines``) given as ``component_parts``; the
    components in ``report`` are not read."""
    lines: list[str] = []
    add = lines.append
    fmt = _f

    def head(name: str, doc: str, kind: str) -> None:
        add(f"# HELP {name} {_esc_help(doc)}")
        add(f"# TYPE {name} {kind}")

    services = [report.services[n] for n in sorted(report.services)]
    # prometheus_client writes label names sorted; so does this.
    svc = [f'kind="{_esc(s.kind)}",service="{_esc(s.name)}"' for s in services]
    win = [f',window="{w}"' for w in WINDOWS]

    def per_service(name: str, doc: str, value: Callable[[Any], float | None],
                    kind: str = "gauge") -> None:
        head(name, doc, kind)
        for s, lab in zip(services, svc, strict=True):
            v = value(s)
            if v is not None:
                add(f"{name}{{{lab}}} {fmt(v)}")

    def per_window(name: str, doc: str, attr: str) -> None:
        head(name, doc, "gauge")
        for s, lab in zip(services, svc, strict=True):
            values = getattr(s, attr)
            for w, wl in zip(WINDOWS, win, strict=True):
                add(f"{name}{{{lab}{wl}}} {fmt(values[w])}")

    head("slawatch_service_info", "service metadata (value 1)", "gauge")
    for s, lab in zip(services, svc, strict=True):
        add(f'slawatch_service_info{{customers="{_esc(",".join(s.customers))}",{lab}}} 1.0')
    per_service("slawatch_service_up", "1 up or maintenance, 0 down",
                lambda s: 1.0 if s.up else 0.0)
    per_service("slawatch_service_maintenance", "1 while in planned maintenance",
                lambda s: 1.0 if s.maintenance else 0.0)
    per_window("slawatch_service_availability_ratio",
               "up / (up + down) over the window ending now", "availability")
    per_service("slawatch_service_sla_availability_ratio", "availability over the SLA period",
                lambda s: s.sla_availability)
    per_service("slawatch_service_sla_target_ratio", "the SLA target", lambda s: s.target)
    per_window("slawatch_service_burn_rate", "(1 - availability) / (1 - target)", "burn_rate")
    per_service("slawatch_service_error_budget_remaining_ratio",
                "1 - (1 - sla availability) / (1 - target); may be negative",
                lambda s: s.error_budget_remaining)
    per_service("slawatch_service_error_budget_exhaustion_seconds",
                "seconds until the budget is gone at the last hour's rate",
                lambda s: s.error_budget_exhaustion_seconds)
    per_service("slawatch_service_trending_below_sla",
                "1 when multi-window burn rates say the SLA will be missed",
                lambda s: 1.0 if s.trending_below_sla else 0.0)
    per_service("slawatch_service_sla_status", "0 meeting, 1 trending below, 2 breached",
                lambda s: float(s.sla_status))
    per_service("slawatch_service_outage_seconds",
                "length of the current unplanned outage, 0 when up", lambda s: s.outage_seconds)
    per_service("slawatch_service_restore_target_seconds", "restore_time",
                lambda s: s.restore_target_seconds)
    per_service("slawatch_service_outages_total", "unplanned outages begun",
                lambda s: float(s.outages_total), "counter")
    per_service("slawatch_service_downtime_seconds_total",
                "unplanned downtime seconds of ended outages",
                lambda s: s.downtime_seconds_total, "counter")
    per_service("slawatch_service_supported_availability_ratio",
                "availability the components' KPIs can carry",
                lambda s: s.supported_availability)
    per_service("slawatch_service_kpi_gap", "1 when supported availability < target",
                lambda s: 1.0 if s.kpi_gap else 0.0)
    head("slawatch_service_downtime_by_component_seconds",
         "unplanned downtime in the SLA period attributed to a component", "gauge")
    for s, lab in zip(services, svc, strict=True):
        blame = s.downtime_by_component
        for comp in sorted(blame):
            add(f'slawatch_service_downtime_by_component_seconds{{component="{_esc(comp)}",{lab}}}'
                f" {fmt(blame[comp])}")

    lines.append("")
    head_text = "\n".join(lines)
    lines.clear()
    head("slawatch_events_total", "component event messages by outcome", "counter")
    for outcome in sorted(report.events):
        add(f'slawatch_events_total{{outcome="{_esc(outcome)}"}} {fmt(float(report.events[outcome]))}')
    head("slawatch_unmapped_components", "distinct unmapped components seen", "gauge")
    add(f"slawatch_unmapped_components {fmt(float(report.unmapped_components))}")
    lines.append("")
    return [head_text, *component_parts, "\n".join(lines)]


_C_UP = "slawatch_component_up"
_C_AVAIL = "slawatch_component_availability_ratio"
_C_KPI = "slawatch_component_kpi_target_ratio"
_C_HEADS = (
    f"# HELP {_C_UP} 1 up, 0 down or maintenance\n# TYPE {_C_UP} gauge\n",
    f"# HELP {_C_AVAIL} availability over the window, maintenance excluded\n"
    f"# TYPE {_C_AVAIL} gauge\n",
    f"# HELP {_C_KPI} the component's kpi\n# TYPE {_C_KPI} gauge\n",
)
_WIN_LABELS = tuple(f',window="{w}"}} ' for w in WINDOWS)
_NEG_INF = -math.inf


def _f(v: float) -> str:
    """``_fmt(v)``: the same text (repr is what Go's format gives below 1e6)."""
    return repr(v) if _NEG_INF < v < 1e6 else _fmt(v)


def _component_label(name: str, team: str | None) -> str:
    return f'component="{_esc(name)}",team="{_esc(team or "")}"'


def _component_lines(lab: str, up: bool, avail: dict[str, float],
                     kpi: float | None) -> tuple[str, str, str]:
    """One component's lines of each of the three component families."""
    a = f"{_C_AVAIL}{{{lab}"
    return (
        f"{_C_UP}{{{lab}}} {'1.0' if up else '0.0'}\n",
        "".join([f"{a}{wl}{_f(v)}\n"
                 for wl, v in zip(_WIN_LABELS, map(avail.__getitem__, WINDOWS), strict=True)]),
        "" if kpi is None else f"{_C_KPI}{{{lab}}} {_f(float(kpi))}\n",
    )


def component_text(comps: list[ComponentReport]) -> str:
    """The component families for ``comps`` (in that order) as text, each line ending
    with a newline."""
    ups, avails, kpis = [_C_HEADS[0]], [_C_HEADS[1]], [_C_HEADS[2]]
    for c in comps:
        u, a, k = _component_lines(_component_label(c.name, c.team), c.up, c.availability, c.kpi)
        ups.append(u)
        avails.append(a)
        kpis.append(k)
    return "".join(ups + avails + kpis)


class _Entry:
    __slots__ = ("avail", "comp", "kpi", "since", "token", "until", "up")

    def __init__(self, comp: Component, token: object, since: float, until: float,
                 lines: tuple[str, str, str]) -> None:
        self.comp = comp
        self.token = token
        self.since = since
        self.until = until
        self.up, self.avail, self.kpi = lines


#: The token of a component without a tracker (never heard of: up all along).
_NO_TRACKER = object()


class ComponentLines:
    """The component families at each scrape, reusing a component's lines while exact.

    A component's lines are a function of its catalog entry, its tracker and ``now``.
    They are kept with the catalog entry, the tracker's stored bytes (the tracker is
    exactly their decoding, so equal bytes mean an unchanged tracker) and the interval
    ``[since, until)`` in which ``component_lines_until`` proved every value constant
    (a component that was up or down throughout every window); anything else, and a
    tracker with unwritten changes, is computed afresh.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self.reused = 0  # for tests and the benchmark: lines reused at the last render

    def render(self, catalog: Catalog, table: TrackerTable[ComponentTracker],
               cids: list[str], now: float) -> list[str]:
        """The three families for ``cids`` in that order, as text parts."""
        entries = self._entries
        components = catalog.components
        ups, avails, kpis = [_C_HEADS[0]], [_C_HEADS[1]], [_C_HEADS[2]]
        reused = 0
        for cid in cids:
            comp = components[cid]
            tracker, stored = table.get_stored(cid)
            token: object = _NO_TRACKER if tracker is None else stored
            e = entries.get(cid)
            if (e is not None and e.comp is comp and e.since <= now < e.until
                    and token is not None and (e.token is token or e.token == token)):
                reused += 1
            else:
                rep = component_report(comp, tracker, now)
                lines = _component_lines(_component_label(comp.id, comp.team), rep.up,
                                         rep.availability, comp.kpi)
                until = component_lines_until(tracker, now) if token is not None else now
                if until > now:
                    e = entries[cid] = _Entry(comp, token, now, until, lines)
                else:
                    entries.pop(cid, None)
                    ups.append(lines[0])
                    avails.append(lines[1])
                    kpis.append(lines[2])
                    continue
            ups.append(e.up)
            avails.append(e.avail)
            kpis.append(e.kpi)
        self.reused = reused
        if len(entries) > len(cids):  # components gone from the catalog or elsewhere
            keep = set(cids)
            for cid in [c for c in entries if c not in keep]:
                del entries[cid]
        return ups + avails + kpis


def make_registry(rt: Runtime, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """A registry holding only the slawatch collector (no process/GC noise by default)."""
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    collector = SlawatchCollector(rt)
    registry.register(collector)
    registry.slawatch_collector = collector  # type: ignore[attr-defined]  # for render()
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The exposition text and its content type: the registry's metrics, then the
    service and component families of the ``SlawatchCollector`` ``make_registry``
    registered on it."""
    chunks, content_type = render_chunks(registry)
    return b"".join(chunks), content_type


#: Size of the pieces ``render_chunks`` encodes the text in.
CHUNK_CHARS = 1 << 20


def render_chunks(registry: CollectorRegistry) -> tuple[list[bytes], str]:
    """``render`` as a list of byte strings of about ``CHUNK_CHARS`` each, to be written
    one after the other: a million series are ~120 MB of text, which joined into one
    string and then encoded was held three times over."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    chunks = [generate_latest(registry)]
    collector = getattr(registry, "slawatch_collector", None)
    if isinstance(collector, SlawatchCollector):
        group: list[str] = []
        size = 0
        for part in collector.report_parts():
            group.append(part)
            size += len(part)
            if size >= CHUNK_CHARS:
                chunks.append("".join(group).encode())
                group.clear()
                size = 0
        if group:
            chunks.append("".join(group).encode())
    return chunks, CONTENT_TYPE_LATEST

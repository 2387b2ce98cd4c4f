"""Prometheus collector: every metric of CONTRACT §4, built fresh at each scrape.

Nothing is kept in prometheus_client's own metric objects: the numbers depend on the
wall clock (windows end at ``now``) and on which partitions this worker owns at that
moment, so they are computed from the tables when scraped. The collector exports only
what this worker actively owns, so the union over workers is the whole set and each
service/component series appears once; counters that are per worker (catalog reload
errors) describe the worker itself.
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
import time
from bisect import bisect_right
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString as _float_to_go_string

from agents.exposition.spec import (
    COMPONENT_METRICS,
    EVENT_METRICS,
    SERVICE_METRICS,
    WORKER_METRICS,
    MetricSpec,
)
from agents.worker.runtime import Runtime
from agents.worker.state import TrackerTable
from streams import native
from streams.accounting import OUTSIDE, component_view
from streams.calendars import MaintenanceWindow
from streams.catalog import Catalog
from streams.report import (
    CODE_VALUES,
    ComponentReport,
    Report,
    ServiceReport,
    component_lines_codes_many,
    service_report,
    service_report_until,
    warm_service,
    window_availability_flat,
    window_availability_many,
)
from streams.states import UP
from streams.timeline import Timeline
from streams.windows import WINDOWS

_ALL_UP = dict.fromkeys(WINDOWS, 1.0)
_UP_I = int(UP)

INGEST_ENDPOINTS = ("events", "alertmanager")
#: Keys per step of ``SlawatchCollector.prepare`` (~10-30 ms of the event loop each).
PREPARE_KEYS = 2048


class SlawatchCollector:
    """A custom collector over a ``Runtime``; register it on an injected registry."""

    def __init__(self, rt: Runtime, clock: Callable[[], float] = time.time) -> None:
        self.rt = rt
        self.clock = clock
        self.component_lines = ComponentLines()
        self.service_lines = ServiceLines()
        #: Responses being written (``agents/web/metrics.py``): the worker holds its
        #: prepare and refresh steps meanwhile, which would otherwise run between the
        #: pieces of a response and add their time to that scrape's.
        self.writing = 0

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
        return "".join(map(_text, self.report_parts()))

    def report_parts(self) -> list[Part]:
        """``render_report(rt.report(now))`` in parts whose concatenation is that text;
        the component families come from ``ComponentLines``, which reuses a
        component's lines while they are exactly what a fresh report would give."""
        rt = self.rt
        if not rt.ready():
            # Mid-rebalance or mid-recovery the tables are incomplete: exporting them
            # would show counters going down and outages vanishing. Export nothing.
            return []
        now = self.clock()
        catalog = rt.catalog
        report = rt.report(now, services=(), components=False)  # the counters only
        services = self.service_lines.render(catalog, rt.services, rt.owned_sorted("services"),
                                             now, _S_HEADS)
        components = self.component_lines.render(catalog, rt.components,
                                                 rt.owned_sorted("components"), now, _C_HEADS)
        return render_parts(report, components, services)

    def prepare(self, step: int = PREPARE_KEYS) -> Iterator[None]:
        """Do ahead, ``step`` keys at a time, the work a first scrape would do: decode
        the owned trackers and prove which lines stay constant (``ComponentLines``,
        ``ServiceLines``), yielding between steps. The worker runs it once it is
        ready (``agents/worker/app.py``), in slices between which the event loop
        serves the pipeline and scrapes; a scrape meanwhile is exact (it computes what
        is not prepared yet). Stops early if the worker stops being ready."""
        return self._ahead(step, decode=True)

    def refresh(self, step: int = PREPARE_KEYS) -> Iterator[None]:
        """``prepare`` again for what changed since: only the trackers whose stored
        bytes changed (or whose proof ran out) are looked at again, and the lazily
        built sums of those whose values move are built, so the next scrape costs what
        a scrape with no change before it does. The worker runs it when its pipeline
        is idle (``agents/worker/app.py``): after a backlog, the first scrape would
        otherwise redo the work for every tracker the backlog changed."""
        return self._ahead(step, decode=False)

    def prepare_catalog(self) -> Iterator[None]:
        """The part of ``prepare`` that reads no tracker, yielding between steps: the
        catalog's constants a service's report reads, the services' label texts, the
        owned keys in order and the components' chunks of labels. Events do not
        change any of it, so the worker runs it once ready even while a backlog holds
        the rest (after a backlog the first scrape then only computes values: at
        100k components / 10k services this was ~0.3 s of its CPU). What depends on
        the catalog alone is made before the worker is ready too, while it joins its
        group (``agents/worker/app.py``): the day rollups of the first services
        checkpoint read the same constants, and a backlog waiting at the start paid
        them in its first seconds (at 20,000 components ~0.1 s of its CPU)."""
        rt = self.rt
        catalog = rt.catalog
        catalog.warm()
        yield
        self.service_lines.labels(catalog)
        yield
        if not rt.ready() or rt.catalog is not catalog:
            return
        components = rt.owned_sorted("components")
        yield
        rt.owned_sorted("services")  # remembered for the scrape
        yield
        for _ in self.component_lines.build(catalog, components):
            yield
            if not rt.ready() or rt.catalog is not catalog:
                return

    def _ahead(self, step: int, decode: bool) -> Iterator[None]:
        rt = self.rt
        if not rt.ready():
            return
        catalog = rt.catalog
        now = self.clock()
        components, services = rt.owned_sorted("components"), rt.owned_sorted("services")

        def decode_keys(table: TrackerTable[Any], keys: list[str]) -> Iterator[None]:
            get = table.get
            for k in range(0, len(keys), step):
                for key in keys[k:k + step]:
                    get(key)
                yield

        steps = itertools.chain(
            *((decode_keys(rt.components, components), decode_keys(rt.services, services))
              if decode else ()),
            # A service's lines cost ~20 times a component's decoding: smaller steps.
            self.service_lines.prepare(catalog, rt.services, services, now, max(1, step // 8)),
            self.component_lines.prepare(catalog, rt.components, components, now))
        for _ in steps:
            yield
            if not rt.ready() or rt.catalog is not catalog:
                return

    def _worker_metrics(self, ready: bool) -> Iterator[Metric]:
        c = self.rt.counters
        ready_m, reload_errors, reloads, requests, events, loaded = WORKER_METRICS
        yield _family(ready_m, [([], 1.0 if ready else 0.0)])
        yield _family(reload_errors, [([], float(c.catalog_reload_errors))])
        yield _family(reloads, [([], float(c.catalog_reloads))])
        # 0 for the series known to exist
        yield _family(requests, [([e, str(code)], float(c.ingest_requests.get((e, code), 0)))
                                 for e in INGEST_ENDPOINTS for code in (202, 400, 413, 503)])
        yield _family(events, [([e], float(c.ingest_events.get(e, 0))) for e in INGEST_ENDPOINTS])
        yield _family(loaded, [([], c.catalog_loaded_at)])


def _family(spec: MetricSpec, samples: list[tuple[list[str], float]]) -> Metric:
    """A prometheus_client family of ``spec`` holding ``samples`` (label values, value)."""
    cls = CounterMetricFamily if spec.type == "counter" else GaugeMetricFamily
    fam = cls(spec.family, spec.help, labels=list(spec.labels))
    for labels, value in samples:
        fam.add_metric(labels, value)
    return fam


#: prometheus_client's float formatting (NaN, +Inf, Go-style exponents), typed.
_fmt: Callable[[float], str] = _float_to_go_string


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_report(report: Report) -> str:
    """Every family of a report in the text format, written directly.

    Same names, help, types, labels, values and order as prometheus_client writes them
    (tests/unit/agents/exposition/test_collector_text.py compares the two); label values are escaped once per
    service or component instead of once per sample.
    """
    comps = [report.components[c] for c in sorted(report.components)]
    return "".join(map(_text, render_parts(report, [component_text(comps)])))


def render_parts(report: Report, component_parts: list[Part],
                 service_parts: list[Part] | None = None) -> list[Part]:
    """``render_report`` in parts, with the component families (of
    ``component_text`` or ``ComponentLines``) given as ``component_parts``, and the
    service families as ``service_parts`` if given (``ServiceLines``); what is given
    is not read from ``report``."""
    if service_parts is None:
        service_parts = list(service_text([report.services[n] for n in sorted(report.services)]))
    lines: list[str] = []
    add = lines.append
    fmt = _f

    events, unmapped = EVENT_METRICS
    add(events.head.rstrip("\n"))
    for outcome in sorted(report.events_total):
        add(f'{events.name}{{outcome="{_esc(outcome)}"}} {fmt(float(report.events_total[outcome]))}')
    add(unmapped.head.rstrip("\n"))
    add(f"{unmapped.name} {fmt(float(report.unmapped_components))}")
    lines.append("")
    return [*service_parts, *component_parts, "\n".join(lines)]


#: The service families' heads and names, in the order written (``spec.SERVICE_METRICS``).
_S_HEADS = tuple(m.head for m in SERVICE_METRICS)
_S_NAMES = tuple(m.name for m in SERVICE_METRICS)


def _service_lines(s: ServiceReport) -> tuple[str, ...]:
    """One service's lines of each service family (``spec.SERVICE_METRICS``), each string
    empty or whole lines."""
    # prometheus_client writes label names sorted; so does this.
    return _service_lines_known(s, f'kind="{_esc(s.kind)}",service="{_esc(s.name)}"', True)


def _service_lines_known(s: ServiceReport, lab: str, escape: bool) -> tuple[str, ...]:
    """``_service_lines(s)`` with its label text ``lab`` known, and whether a name of
    its components needs escaping (``escape``)."""
    values, comps = _service_values(s)
    return _service_lines_texts(s, lab, escape, comps, _value_texts(values))


def _service_values(s: ServiceReport) -> tuple[list[float], tuple[str, ...]]:
    """The values of a service's lines that vary, in the order ``_service_lines_texts``
    reads their texts, and its blamed components' names in the order of their values."""
    blame = s.downtime_by_component_seconds
    comps = tuple(sorted(blame)) if blame else ()
    restore = s.restore_target_seconds
    return ([*_BY_WINDOW(s.availability_ratio), *_BY_WINDOW(s.burn_rate), s.sla_availability_ratio,
             s.error_budget_remaining_ratio, s.error_budget_exhaustion_seconds, s.outage_seconds,
             s.downtime_seconds_total, s.sla_target_ratio, float(s.sla_status),
             float(s.outages_total), s.supported_availability_ratio,
             *(() if restore is None else (restore,)), *[blame[c] for c in comps]], comps)


def _value_texts(values: list[float]) -> list[str]:
    """``_f`` of each value (through orjson when they are all floats)."""
    return _float_texts(values) if set(map(type, values)) == _FLOATS else list(map(_f, values))


def _service_lines_texts(s: ServiceReport, lab: str, escape: bool, comps: tuple[str, ...],
                         texts: list[str]) -> tuple[str, ...]:
    """``_service_lines_known`` with the texts of ``_service_values(s)`` given."""
    return _row_lines(lab, _esc(",".join(s.customers)), _flags(s), texts,
                      tuple(map(_esc, comps)) if escape else comps,
                      s.restore_target_seconds is not None)


def _flags(s: ServiceReport) -> bytes:
    """A service's 0/1 values (``_row_lines``' ``flags``), one shared object per set."""
    key = (s.up, s.maintenance, s.in_service_time, s.scheduled_maintenance,
           s.trending_below_sla, s.kpi_gap)
    flags = _FLAGS.get(key)
    if flags is None:
        flags = _FLAGS[key] = bytes(map(int, key))
    return flags


_FLAGS: dict[tuple[bool, ...], bytes] = {}
#: Values of a service's row before its restore target and blame (``_service_values``).
_ROW_FIXED = 25
_ONE_ZERO = ("0.0", "1.0")


def _row_lines(lab: str, cust: str, flags: bytes, texts: list[str], comps: tuple[str, ...],
               restore: bool) -> tuple[str, ...]:
    """A service's lines of each service family (``spec.SERVICE_METRICS``), each string
    empty or whole lines: ``lab`` its label text, ``cust`` its customers' text,
    ``flags`` its 0/1 values (up, maintenance, in service time, scheduled maintenance,
    trending, KPI gap), ``texts`` those of ``_service_values`` (with the restore
    target's if ``restore``), ``comps`` its blamed components' names as written."""
    (n_info, n_up, n_maint, n_in_st, n_sched, n_avail, n_sla, n_target, n_burn, n_budget, n_exhaust,
     n_trend, n_status, n_outage, n_restore, n_outages, n_down, n_supported, n_gap,
     n_blame) = _S_NAMES
    sla_t, budget_t, exhaust_t, outage_t, down_t, target_t, status_t, outages_t, supported_t = \
        texts[16:25]
    up, maint, in_st, sched, trend, gap = (_ONE_ZERO[f] for f in flags)
    nb = _ROW_FIXED + restore  # the first blame value's
    if len(texts) != nb + len(comps):
        raise ValueError("a service's row: 25 values, its restore target's and one per "
                         "blamed component")
    blame_text = "".join([f'{n_blame}{{component="{c}",{lab}}} {t}\n'
                          for c, t in zip(comps, texts[nb:], strict=True)])
    return (
        f'{n_info}{{customers="{cust}",{lab}}} 1.0\n',
        f"{n_up}{{{lab}}} {up}\n",
        f"{n_maint}{{{lab}}} {maint}\n",
        f"{n_in_st}{{{lab}}} {in_st}\n",
        f"{n_sched}{{{lab}}} {sched}\n",
        _window_texts(f"{n_avail}{{{lab}", texts[0:8]),
        f"{n_sla}{{{lab}}} {sla_t}\n",
        f"{n_target}{{{lab}}} {target_t}\n",
        _window_texts(f"{n_burn}{{{lab}", texts[8:16]),
        f"{n_budget}{{{lab}}} {budget_t}\n",
        f"{n_exhaust}{{{lab}}} {exhaust_t}\n",
        f"{n_trend}{{{lab}}} {trend}\n",
        f"{n_status}{{{lab}}} {status_t}\n",
        f"{n_outage}{{{lab}}} {outage_t}\n",
        f"{n_restore}{{{lab}}} {texts[25]}\n" if restore else "",
        f"{n_outages}{{{lab}}} {outages_t}\n",
        f"{n_down}{{{lab}}} {down_t}\n",
        f"{n_supported}{{{lab}}} {supported_t}\n",
        f"{n_gap}{{{lab}}} {gap}\n",
        blame_text,
    )


#: A service's values as ``ServiceLines`` keeps and writes them: ``(flags, json, comps,
#: restore, odd)``: its 0/1 values (``_flags``), the JSON array of its values
#: (``_service_values``; orjson's text, which is ``_f``'s but at the indexes of
#: ``odd``, None or a dict index -> ``_f`` text), its blamed components' names as
#: written (escaped) and whether it has a restore target.
Row = tuple[bytes, bytes, tuple[str, ...], bool, "dict[int, str] | None"]


def service_row(flags: bytes, values: list[float], comps: tuple[str, ...], restore: bool,
                kind: int | None = None) -> Row:
    """A service's ``Row`` of its values (``_service_values``' order); ``kind``: what
    ``plain_floats`` says of them (or of a list they are part of), if known."""
    fast = native.native
    if kind is None:
        kind = (_plain_floats(values, _FAST_LO, _FAST_HI) if fast is None
                else fast.plain_floats(values, _FAST_LO, _FAST_HI))
    odd: dict[int, str] | None = None
    if not _FAST:  # pragma: no cover - an orjson that writes floats otherwise
        json = ("[" + ",".join(map(_f, values)) + "]").encode()
    else:
        if kind == OTHER:
            values = [float(v) for v in values]  # _f of each is the same text
        # Copied: orjson's bytes hold a block of 8 KiB whatever their length (10,000
        # services' rows were 80 MB at the peak of a scrape).
        json = memoryview(orjson.dumps(values)).tobytes()
        if kind != PLAIN:
            odd_floats = _odd_floats if fast is None else fast.odd_floats
            odd = {k: _f(values[k]) for k in odd_floats(values, _FAST_LO, _FAST_HI)} or None
    return (flags, json, comps, restore, odd)


def _service_families_text(names: tuple[str, ...], wins: tuple[str, ...], labs: list[str],
                           custs: list[str], rows: list[Row]) -> list[str]:
    """The lines of each service family (without heads) of the services of ``rows``
    (``_native.service_families``' twin)."""
    if len(names) != len(_S_NAMES) or len(wins) != len(WINDOWS) or not (
            len(labs) == len(custs) == len(rows)):
        raise ValueError("service_families: 20 names, 8 windows, a label and customers per row")
    if names != _S_NAMES or wins != _WIN_LABELS:
        raise ValueError("service_families: the spec's names and window labels")
    per = []
    for lab, cust, (flags, json, comps, restore, odd) in zip(labs, custs, rows, strict=True):
        if len(flags) != 6:
            raise TypeError("service_families: a row is (6 bytes, bytes, tuple, bool, dict or None)")
        texts = _json_items(json)
        for k, t in (odd or {}).items():
            if not 0 <= k < len(texts):
                raise ValueError("service_families: an odd text's index out of range")
            texts[k] = t
        per.append(_row_lines(lab, cust, flags, texts, comps, bool(restore)))
    return ["".join(column) for column in zip(*per, strict=True)] if per else [""] * len(names)


def service_families(labs: list[str], custs: list[str], rows: list[Row]) -> list[str]:
    """``_service_families_text`` of the spec's names, in C when the extension is built
    and every string is ASCII."""
    fast = native.native
    if fast is not None:
        try:
            return list(fast.service_families(_S_NAMES, _WIN_LABELS, labs, custs, rows))
        except ValueError:
            if all(map(str.isascii, itertools.chain(labs, custs, *(r[2] for r in rows)))):
                raise  # a malformed row (C leaves only strings beyond ASCII to Python)
    return _service_families_text(_S_NAMES, _WIN_LABELS, labs, custs, rows)


_FLOATS = {float}


def _window_texts(head: str, texts: list[str]) -> str:
    """``head`` + window label + text, a line per window."""
    w0, w1, w2, w3, w4, w5, w6, w7 = _WIN_LABELS
    v0, v1, v2, v3, v4, v5, v6, v7 = texts
    return (f"{head}{w0}{v0}\n{head}{w1}{v1}\n{head}{w2}{v2}\n{head}{w3}{v3}\n"
            f"{head}{w4}{v4}\n{head}{w5}{v5}\n{head}{w6}{v6}\n{head}{w7}{v7}\n")


def _window_lines(head: str, by_window: dict[str, float]) -> str:
    """``head`` + window label + value, a line per window."""
    values = list(_BY_WINDOW(by_window))
    return _window_texts(head, _float_texts(values) if set(map(type, values)) == _FLOATS
                         else list(map(_f, values)))


def _service_families(per_service: list[tuple[str, ...]]) -> list[str]:
    out: list[str] = []
    for i, h in enumerate(_S_HEADS):
        out.append(h)
        out += [t[i] for t in per_service]
    return out


def service_text(services: list[ServiceReport]) -> list[str]:
    """The service families for ``services`` (in that order) as text parts."""
    return _service_families([_service_lines(s) for s in services])


_C_UP, _C_AVAIL, _C_KPI = (m.name for m in COMPONENT_METRICS)
_C_HEADS = tuple(m.head for m in COMPONENT_METRICS)
_WIN_LABELS = tuple(f',window="{w}"}} ' for w in WINDOWS)
_NEG_INF = -math.inf


def _f(v: float) -> str:
    """``_fmt(v)``: the same text (a float's repr is what Go's format gives below 1e6)."""
    return repr(v) if type(v) is float and _NEG_INF < v < 1e6 else _fmt(v)


#: Floats whose shortest round-trip text orjson writes as ``repr`` does (fixed point,
#: the same digits): ``repr`` switches to an exponent below 1e-4, ``_fmt`` to Go's
#: format from 1e6 on.
_FAST_LO, _FAST_HI = 1e-4, 1e6
#: Values whose texts are checked against ``repr`` once at import (the digits of both
#: are the shortest that read back as the float, the nearest when two are as short).
_PROBES = (0.0001, 0.00010000000000000002, 0.1, 0.2, 0.30000000000000004, 1 / 3, 2 / 3,
           0.5, 0.9999999999999999, 1.0, 1.5, 0.00012345678901234567, 0.001, 0.9876543210123456,
           123456.789, 999999.9999999999, 0.7071067811865476, 2.220446049250313e-4,
           0.1234567890123456, 12.000000000000002)


def _orjson_texts(values: list[float]) -> list[str]:
    return orjson.dumps(values)[1:-1].decode().split(",")


_FAST = _orjson_texts(list(_PROBES)) == list(map(repr, _PROBES))


def _float_texts(values: list[float]) -> list[str]:
    """``[_f(v) for v in values]`` for floats: the same texts, written by orjson (a
    float's repr costs ~0.7 us; orjson writes the same digits ~20 times faster) where
    its text is repr's, by ``_f`` elsewhere (below 1e-4 or from 1e6 in magnitude but
    0.0, NaN, infinities).
    Every value must be a ``float`` (an int's text would differ)."""
    if not values:
        return []
    if not _FAST:  # pragma: no cover - an orjson that writes floats otherwise
        return list(map(_f, values))
    texts = _orjson_texts(values)
    fast = native.native
    if fast is not None:
        for k in fast.odd_floats(values, _FAST_LO, _FAST_HI):
            texts[k] = _f(values[k])
        return texts
    total = sum(values)  # NaN if any is NaN (or both infinities are there)
    if not (min(values) >= _FAST_LO and max(values) < _FAST_HI and total == total):
        lo, hi, f = _FAST_LO, _FAST_HI, _f
        for k, v in enumerate(values):
            # orjson's text of -v is "-" and that of v, as repr's; 0.0 and -0.0 alike.
            if not (lo <= v < hi or -hi < v <= -lo or v == 0.0):
                texts[k] = f(v)
    return texts


def _odd_floats(values: list[float], lo: float, hi: float) -> list[int]:
    """The indexes of the values that are not 0.0 and whose magnitude is not in
    ``[lo, hi)`` (``_native.odd_floats``'s twin); every value must be a float."""
    if not all(isinstance(v, float) for v in values):
        raise TypeError("odd_floats: every value must be a float")
    return [k for k, v in enumerate(values) if not (v == 0.0 or lo <= abs(v) < hi)]


#: ``plain_floats``' answers: every value a float whose text orjson writes as ``_f``
#: does; every value a float (``_float_texts`` takes them); some value another type.
PLAIN, FLOATS, OTHER = 2, 1, 0


def _plain_floats(values: list[float], lo: float, hi: float) -> int:
    """``PLAIN`` if every item is a float that is 0.0 or of a magnitude in ``[lo, hi)``
    (none needs ``_f`` in ``_float_texts``), else ``FLOATS`` if every item is a float,
    else ``OTHER`` (``_native.plain_floats``'s twin)."""
    if not all(type(v) is float for v in values):
        return OTHER
    return PLAIN if all(v == 0.0 or lo <= abs(v) < hi for v in values) else FLOATS


def _component_label(name: str, team: str | None) -> str:
    return f'component="{_esc(name)}",team="{_esc(team or "")}"'


def _component_lines(lab: str, up: bool, avail: dict[str, float],
                     kpi: float | None) -> tuple[str, str, str]:
    """One component's lines of each of the three component families."""
    a = f"{_C_AVAIL}{{{lab}"
    v0, v1, v2, v3, v4, v5, v6, v7 = map(_f, map(avail.__getitem__, WINDOWS))
    w0, w1, w2, w3, w4, w5, w6, w7 = _WIN_LABELS
    return (
        f"{_C_UP}{{{lab}}} {'1.0' if up else '0.0'}\n",
        f"{a}{w0}{v0}\n{a}{w1}{v1}\n{a}{w2}{v2}\n{a}{w3}{v3}\n"
        f"{a}{w4}{v4}\n{a}{w5}{v5}\n{a}{w6}{v6}\n{a}{w7}{v7}\n",
        "" if kpi is None else f"{_C_KPI}{{{lab}}} {_f(float(kpi))}\n",
    )


def component_text(comps: list[ComponentReport]) -> str:
    """The component families for ``comps`` (in that order) as text, each line ending
    with a newline."""
    ups, avails, kpis = [_C_HEADS[0]], [_C_HEADS[1]], [_C_HEADS[2]]
    for c in comps:
        u, a, k = _component_lines(_component_label(c.name, c.team), c.up, c.availability_ratio,
                                   c.kpi_target_ratio)
        ups.append(u)
        avails.append(a)
        kpis.append(k)
    return "".join(ups + avails + kpis)


#: Keys whose lines of one family ``_LineCache.render`` puts in one part.
JOIN_KEYS = 4096
#: Keys whose lines ``_LineCache.render`` computes in one ``fresh_many`` (their reports
#: are held until their lines are written).
FRESH_KEYS = 256

#: Services whose lines of one family ``ServiceLines.parts`` writes in one part (at 10
#: blamed components a service, ~1 MB of text).
SERVICE_KEYS = 1024

#: One key's lines of one family.
Line = str


class _Fmt:
    """Text written when read: ``"".join(fmt) % args`` (a chunk of keys' lines of one
    family). The format strings are shared, the label and value arguments referenced,
    so a part costs a few references per key until it is written."""

    __slots__ = ("args", "fmt")

    def __init__(self, fmt: tuple[str, ...], args: tuple[object, ...]) -> None:
        self.fmt = fmt
        self.args = args

    def text(self) -> str:
        return "".join(self.fmt) % self.args


#: A piece of the exposition text: a string, pieces to be joined, or a ``_Fmt``.
Part = str | list[Line] | _Fmt


def _text(part: Part) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, _Fmt):
        return part.text()
    return "".join(part)


class _Entry:
    __slots__ = ("lines", "since", "token", "until")

    def __init__(self, token: bytes | None, since: float, until: float, lines: Any) -> None:
        self.token = token  # the stored bytes of the tracker; None: no tracker
        self.since = since
        self.until = until
        self.lines = lines


class _LineCache:
    """Per key (component or service), its lines of each family, reused while exact.

    An entry keeps the lines with the tracker's stored bytes (the tracker is exactly
    their decoding, so equal bytes mean an unchanged tracker) and the interval
    ``[since, until)`` in which the values were proved constant (``*_until`` in
    ``streams.report``); a tracker with unwritten changes, another catalog,
    or a time outside the interval is computed afresh.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._catalog: Catalog | None = None
        #: Keys whose values move, with the stored bytes ``prepare`` last computed them
        #: from (None: no tracker); of the catalog ``_looked_catalog``.
        self._looked: dict[str, bytes | None] = {}
        self._looked_catalog: Catalog | None = None
        self.reused = 0  # for tests and the benchmark: keys reused at the last render

    def fresh(self, catalog: Catalog, key: str, tracker: Any, now: float
              ) -> tuple[Any, float]:
        """A key's lines (in the form ``parts`` reads) and until when they hold."""
        raise NotImplementedError

    def fresh_many(self, catalog: Catalog, items: list[tuple[str, Any]], now: float
                   ) -> list[tuple[Any, float]]:
        """``fresh`` of each (key, tracker)."""
        return [self.fresh(catalog, key, tracker, now) for key, tracker in items]

    def moving(self, catalog: Catalog, key: str, tracker: Any, now: float) -> bool:
        """Whether ``fresh`` at ``now`` would give ``until <= now`` (its lines are not
        kept); then ``prepare`` only ``warm``s it."""
        return False

    def warm(self, catalog: Catalog, key: str, tracker: Any, now: float) -> None:
        """Build what ``fresh`` at ``now`` builds lazily and keeps (sums), not its lines."""

    def prepare(self, catalog: Catalog, table: TrackerTable[Any], keys: list[str],
                now: float, step: int) -> Iterator[None]:
        """The entries ``render`` at ``now`` would make for ``keys``, ``step`` keys
        at a time (yielding between steps); kept only where they are proved. A key
        whose entry still holds, or whose values move but whose stored bytes are
        those looked at by the last ``prepare`` (its sums are built), is skipped."""
        entries, looked = self._entries, self._looked
        if catalog is not self._catalog:
            entries.clear()
            self._catalog = catalog
        if catalog is not self._looked_catalog:
            looked.clear()
            self._looked_catalog = catalog
        for k in range(0, len(keys), step):
            # Looked up again at each step: a flush between two swaps the dirty keys.
            lookup, dirty = table.stored_lookup()
            for key in keys[k:k + step]:
                if key not in dirty:
                    raw = lookup(key)
                    e = entries.get(key)
                    if e is not None and e.since <= now < e.until and _same(raw, e.token):
                        continue
                    if key in looked and _same(raw, looked[key]):
                        continue
                tracker, stored = table.get_stored(key)
                if stored is None and tracker is not None:
                    continue  # unwritten changes: nothing to keep
                if self.moving(catalog, key, tracker, now):
                    # No entry would be kept: only what its lines read is built.
                    self.warm(catalog, key, tracker, now)
                    entries.pop(key, None)
                    looked[key] = stored
                    continue
                [(lines, until)] = self.fresh_many(catalog, [(key, tracker)], now)
                if until > now:
                    entries[key] = _Entry(stored, now, until, lines)
                    looked.pop(key, None)
                else:
                    entries.pop(key, None)
                    looked[key] = stored
            yield
        if len(looked) > len(keys):  # keys no longer owned
            keep = set(keys)
            for key in [k for k in looked if k not in keep]:
                del looked[key]

    def render(self, catalog: Catalog, table: TrackerTable[Any], keys: list[str],
               now: float, heads: tuple[str, ...]) -> list[Part]:
        """The families for ``keys`` in that order, as text parts (heads first)."""
        entries = self._entries
        if catalog is not self._catalog:  # labels, KPIs, requirements may differ
            entries.clear()
            self._catalog = catalog
        lookup, dirty = table.stored_lookup()
        per_key: list[Any] = []
        add = per_key.append
        reused = 0
        # Keys to compute afresh: (index in per_key, key, tracker, stored bytes, entry).
        todo: list[tuple[int, str, Any, bytes | None, _Entry | None]] = []
        for key in keys:
            e = entries.get(key)
            if e is not None and e.since <= now < e.until and key not in dirty:
                raw = lookup(key)
                token = e.token
                if raw is token or (raw is not None and token is not None and raw == token):
                    add(e.lines)
                    reused += 1
                    continue
            todo.append((len(per_key), key, *table.get_stored(key), e))
            add(())  # its lines: below
            if len(todo) >= FRESH_KEYS:
                self._fresh_into(per_key, todo, catalog, now)
        self._fresh_into(per_key, todo, catalog, now)
        self.reused = reused
        if len(entries) > len(keys):  # keys no longer owned
            keep = set(keys)
            for key in [k for k in entries if k not in keep]:
                del entries[key]
        return self.parts(catalog, keys, per_key, heads)

    def parts(self, catalog: Catalog, keys: list[str], per_key: list[Any],
              heads: tuple[str, ...]) -> list[Part]:
        """The families' text parts (heads first) of ``keys``, whose ``fresh`` lines
        are ``per_key``."""
        raise NotImplementedError


    def _fresh_into(self, per_key: list[Any],
                    todo: list[tuple[int, str, Any, bytes | None, _Entry | None]],
                    catalog: Catalog, now: float) -> None:
        """The lines of the keys in ``todo`` into ``per_key``, their entries kept
        where proved; ``todo`` is emptied."""
        if not todo:
            return
        entries = self._entries
        got = self.fresh_many(catalog, [(key, tracker) for _, key, tracker, _, _ in todo], now)
        for (k, key, tracker, stored, e), (lines, until) in zip(todo, got, strict=True):
            if until > now and (tracker is None or stored is not None):
                entries[key] = _Entry(stored, now, until, lines)
            elif e is not None:
                del entries[key]
            per_key[k] = lines
        todo.clear()


def _same(raw: bytes | None, token: bytes | None) -> bool:
    """Whether stored bytes ``raw`` are ``token`` (None: no tracker)."""
    return raw is token or (raw is not None and token is not None and raw == token)


#: ``_C_UP`` line of a component (``% label``), by whether it is up.
_C_UP_FMT = (f"{_C_UP}{{%s}} 0.0\n", f"{_C_UP}{{%s}} 1.0\n")
_C_AVAIL_HEAD = f"{_C_AVAIL}{{"
#: Pieces per component of the ``_C_AVAIL`` family: its 8 lines are
#: ``HEAD, label, T0, label, T1, ..., label, T7`` with ``Tw = ',window="w"} value\n'``
#: followed (but for the last) by the next line's ``HEAD``.
_C_PIECES = 1 + 2 * len(WINDOWS)
#: Seconds after which a component whose values move is asked again whether they
#: still do (they are computed afresh meanwhile, which is always exact).
RECHECK_SECONDS = 60.0
#: Moving components with more history points than this get their prefix sums built
#: ahead (``prepare``); shorter ones are summed on the spot at each scrape
#: (``window_availability_many`` keeps no sums below 24 points).
WARM_POINTS = 24
_STALE = object()  # a token equal to no stored value: look again at the next scrape
_BY_WINDOW = operator.itemgetter(*WINDOWS)


def _avail_tails(values: tuple[str, ...]) -> tuple[str, ...]:
    """The ``Tw`` pieces (see ``_C_PIECES``) of formatted values, one per window."""
    last = len(WINDOWS) - 1
    return tuple([f"{wl}{v}\n{'' if w == last else _C_AVAIL_HEAD}"
                  for w, (wl, v) in enumerate(zip(_WIN_LABELS, values, strict=True))])


class _Chunk:
    """``JOIN_KEYS`` components in a row: per key its stored bytes when last looked
    at (``tokens``), until when that look holds (``untils``), the format of its
    ``_C_UP`` line and the pieces of its ``_C_AVAIL`` lines; ``moving`` holds the
    trackers of the keys whose values are computed at every scrape."""

    __slots__ = ("keys", "kpi", "kpi_labs", "labs", "moving", "pieces", "tokens", "until",
                 "untils", "up")

    def __init__(self, keys: list[str], labs: list[str], kpis: list[str]) -> None:
        n = len(keys)
        self.keys = keys
        self.labs = labs
        self.kpi = tuple(kpis)
        self.kpi_labs = tuple([lab for lab, k in zip(labs, kpis, strict=True) if k])
        self.tokens: list[object] = [_STALE] * n
        self.untils = [-math.inf] * n
        self.until = -math.inf  # min(untils): before it, only changed bytes matter
        self.up = [_C_UP_FMT[1]] * n
        pieces: list[str] = [""] * (_C_PIECES * n)
        pieces[::_C_PIECES] = [_C_AVAIL_HEAD] * n
        for w in range(len(WINDOWS)):
            pieces[1 + 2 * w::_C_PIECES] = labs
        self.pieces = pieces
        self.moving: dict[int, Any] = {}


class ComponentLines:
    """The component families at each scrape, by chunks of ``JOIN_KEYS`` components.

    A component whose lines ``component_lines_until`` proves constant (up, or down,
    throughout every window) keeps pieces shared by all components with its values
    and is not looked at again until the proof runs out or its stored bytes change;
    the others (``moving``) have their values computed at every scrape. A chunk whose
    keys' stored bytes are all the same objects (one list comparison) and whose
    proofs all hold costs no work per constant key: its text is one join (one ``%``
    for the short families) when written.
    """

    def __init__(self) -> None:
        self._chunks: list[_Chunk] = []
        self._firsts: list[str] = []
        self._keys: list[str] = []
        self._catalog: Catalog | None = None
        #: The ``Tw`` pieces of constant components by their bits of 0.0 windows.
        self._templates: dict[int, tuple[str, ...]] = {}
        self._latest = -math.inf  # the latest ``now`` rendered: each proof began by it
        #: The table and its versions at the last render.
        self._versions: tuple[object, dict[int, int] | None] = (None, None)
        self.reused = 0  # for tests and the benchmark: keys reused at the last render

    def _build(self, catalog: Catalog, keys: list[str]) -> None:
        for _ in self._build_steps(catalog, keys):
            pass

    def build(self, catalog: Catalog, keys: list[str]) -> Iterator[None]:
        """The chunks of ``keys`` (labels, KPI lines) unless built for them already,
        a chunk at a time; they read no tracker (``SlawatchCollector.prepare_catalog``)."""
        if catalog is not self._catalog or (keys is not self._keys and keys != self._keys):
            yield from self._build_steps(catalog, keys)

    def _build_steps(self, catalog: Catalog, keys: list[str]) -> Iterator[None]:
        """``_build``, yielding after each chunk (``prepare``); the chunks are adopted
        at the end, whole."""
        self._catalog = None  # until the chunks are whole
        self._templates.clear()
        comps = catalog.components
        step = max(1, JOIN_KEYS)
        chunks = []
        # One format per KPI value, shared (a string per component was ~10 MB of
        # 100,000, held from the prepare on).
        kpi_fmts: dict[float, str] = {}
        for k in range(0, len(keys), step):
            part = keys[k:k + step]
            labs = [_component_label(c.id, c.team) for c in map(comps.__getitem__, part)]
            kpis = ["" if (kpi := c.kpi) is None else kpi_fmts.get(kpi)
                    or kpi_fmts.setdefault(kpi, f"{_C_KPI}{{%s}} {_f(float(kpi))}\n")
                    for c in map(comps.__getitem__, part)]
            chunks.append(_Chunk(part, labs, kpis))
            yield
        self._chunks = chunks
        self._firsts = [ch.keys[0] for ch in chunks]
        self._keys = keys
        self._catalog = catalog

    def prepare(self, catalog: Catalog, table: TrackerTable[Any], keys: list[str],
                now: float) -> Iterator[None]:
        """What ``render`` at ``now`` would look at, a chunk at a time (yielding
        between chunks): the proofs of constant keys and their pieces. ``render``
        still compares every key's stored bytes with what was seen here."""
        self._versions = (None, None)  # render looks up every key's bytes again
        before = table.versions()
        if catalog is not self._catalog or (keys is not self._keys and keys != self._keys):
            yield from self._build_steps(catalog, keys)
            self._latest = now
        # A prepare begun before a scrape proves from that scrape's time on, not from
        # its own: a proof from an earlier time would make the chunks be built again,
        # and a scrape meanwhile build and prove them all over (~0.5 s at 100,000).
        now = max(self._latest, now)
        self._latest = now
        for ch in self._chunks:
            if sys.getrefcount(ch.pieces) > 2:  # as in render
                ch.pieces = list(ch.pieces)
            # Looked up again at each step: a flush between two swaps the dirty keys.
            lookup, dirty = table.stored_lookup()
            toks = list(map(lookup, ch.keys))
            if now >= ch.until or toks != ch.tokens:
                self._check(ch, toks, table, dirty, now)
                long = [t for t in ch.moving.values()
                        if type(t) is not _Windowed and len(t.history.ts) > WARM_POINTS]
                if long:
                    # Their values are computed at each scrape from prefix sums the
                    # timelines build when first asked and keep until they change:
                    # built here rather than at the scrape.
                    window_availability_many([t.history for t in long], now)
            yield
        if table.versions() == before:
            # No write since the first step: every chunk's tokens are the bytes stored
            # now, so the next render need not look them up again.
            self._versions = (table, before)

    def render(self, catalog: Catalog, table: TrackerTable[Any], keys: list[str],
               now: float, heads: tuple[str, ...]) -> list[Part]:
        """The families for ``keys`` in that order, as text parts (heads first)."""
        if (catalog is not self._catalog or (keys is not self._keys and keys != self._keys)
                or now < self._latest):  # a clock that went back: every proof began later
            self._build(catalog, keys)
        self._latest = now
        lookup, dirty = table.stored_lookup()
        # Versions as at the last render: every key holds the bytes it held then, so
        # the tokens need not be looked up (100,000 lookups are ~0.1 s).
        versions = (table, table.versions())
        unchanged = versions[0] is self._versions[0] and versions[1] == self._versions[1]
        self._versions = versions
        marked: set[int] = set()  # chunks holding keys with unwritten changes
        if isinstance(dirty, Iterable):  # a dict of keys, as TrackerTable keeps them
            firsts = self._firsts
            for key in list(dirty):
                marked.add(bisect_right(firsts, key) - 1)
        elif dirty:
            marked.update(range(len(self._chunks)))
        reused = 0
        ups: list[Part] = [heads[0]]
        avails: list[Part] = [heads[1]]
        kpis: list[Part] = [heads[2]]
        for ci, ch in enumerate(self._chunks):
            if sys.getrefcount(ch.pieces) > 2:  # an earlier scrape's part not yet written
                ch.pieces = list(ch.pieces)  # holds it: changed here, it would change there
            if not unchanged or ci in marked or now >= ch.until:
                toks = list(map(lookup, ch.keys))
                if ci in marked or now >= ch.until or toks != ch.tokens:
                    self._check(ch, toks, table, dirty, now)
            moving = ch.moving
            if moving:
                self._compute(ch, now)
            reused += len(ch.keys) - len(moving)
            ups.append(_Fmt(tuple(ch.up), tuple(ch.labs)))
            avails.append(ch.pieces)  # not copied: see getrefcount above
            kpis.append(_Fmt(ch.kpi, ch.kpi_labs))
        self.reused = reused
        return [*ups, *avails, *kpis]

    def _check(self, ch: _Chunk, toks: list[bytes | None], table: TrackerTable[Any],
               dirty: Container[str], now: float) -> None:
        """Look again at the keys of ``ch`` whose bytes changed, whose proof ran out,
        or that have unwritten changes."""
        tokens, untils, keys = ch.tokens, ch.untils, ch.keys
        look = [i for i, (t, old, u, key) in enumerate(zip(toks, tokens, untils, keys, strict=True))
                if not ((t is old or t == old) and u > now and key not in dirty)]
        if look:
            self._look(ch, look, table, now)
        ch.until = min(untils, default=math.inf)

    def _look(self, ch: _Chunk, look: list[int], table: TrackerTable[Any], now: float) -> None:
        """Keys ``look`` (indexes) of ``ch``: each moving (its values computed at every
        scrape), or proved constant until some time (its lines written here)."""
        keys, tokens, untils, moving = ch.keys, ch.tokens, ch.untils, ch.moving
        got = table.get_stored_many([keys[i] for i in look])
        proofs, codes = component_lines_codes_many([t for t, _ in got], now)
        in_windows = self._catalog.component_windows if self._catalog else None
        recheck = now + RECHECK_SECONDS
        constant: list[tuple[int, int]] = []  # (index, position in codes) proved constant
        for k, (i, (tracker, stored), until) in enumerate(zip(look, got, proofs, strict=True)):
            windows = in_windows.get(keys[i]) if in_windows else None
            if windows:
                # In maintenance while a window naming it is open (CONTRACT §6): the
                # values move with the calendar, so they are computed at every scrape.
                tokens[i] = _STALE if stored is None else stored
                untils[i] = recheck
                moving[i] = _Windowed(tracker, windows)
            elif until > now and (tracker is None or stored is not None):
                tokens[i] = stored
                untils[i] = until
                moving.pop(i, None)
                constant.append((i, 2 * k))
            else:
                # values that move (or changes not yet written): computed at every scrape
                tokens[i] = _STALE if stored is None else stored
                untils[i] = recheck
                moving[i] = tracker
        if constant:
            self._constant(ch, constant, codes)

    def _constant(self, ch: _Chunk, constant: list[tuple[int, int]], codes: bytes) -> None:
        """The lines of keys proved constant (1.0 or 0.0 in each window, as their
        ``component_lines_codes_many`` codes at ``codes[at]`` and ``codes[at + 1]``
        say): pieces shared by the components with the same values."""
        templates = self._templates
        up_i = _UP_I
        n = _C_PIECES
        for i, at in constant:
            zeros = codes[at]
            tails = templates.get(zeros)
            if tails is None:
                # 1.0 or +0.0 (a window of only down seconds: 0.0 / x is +0.0)
                tails = templates[zeros] = _avail_tails(tuple(map(_f, CODE_VALUES[zeros])))
            b = n * i
            ch.up[i] = _C_UP_FMT[codes[at + 1] == up_i]
            ch.pieces[b + 2:b + n:2] = tails

    @staticmethod
    def _compute(ch: _Chunk, now: float) -> None:
        """The values of the moving keys of ``ch`` at ``now``."""
        up_fmt = ch.up
        n = _C_PIECES
        moving = ch.moving
        states, values = window_availability_flat(
            [t.view(now) if type(t) is _Windowed else t.history for t in moving.values()], now)
        put_choices(up_fmt, list(moving), states, _UP_BY_STATE)
        # The texts of all the values at once (window_availability_flat gives floats),
        # each written between its window's label and the next line's head.
        put_value_texts(ch.pieces, [n * i + 2 for i in moving], values, _AVAIL_PRE, _AVAIL_POST)


def _put_texts(out: list[str], at: list[int], texts: list[str] | bytes, pre: tuple[str, ...],
               post: tuple[str, ...]) -> None:
    """``out[at[k] + 2 * w] = pre[w] + texts[nw * k + w] + post[w]`` for every k and
    w < nw = len(pre) (``_native.put_texts``'s twin); ``texts`` may be a JSON array of
    numbers as bytes, whose items are the texts."""
    if isinstance(texts, bytes):
        texts = _json_items(texts)
    nw = len(pre)
    if len(post) != nw or len(texts) != nw * len(at):
        raise ValueError("put_texts: len(texts) must be len(at) * len(pre)")
    for k, b in enumerate(at):
        out[b:b + 2 * nw:2] = [f"{a}{t}{z}" for a, t, z in
                               zip(pre, texts[nw * k:nw * (k + 1)], post, strict=True)]


def _put_choices(out: list[str], at: list[int], picks: bytes, choices: tuple[str, ...]) -> None:
    """``out[at[k]] = choices[picks[k]]`` for every k (``_native.put_choices``'s twin)."""
    if len(picks) != len(at):
        raise ValueError("put_choices: len(picks) must be len(at)")
    for i, p in zip(at, picks, strict=True):
        out[i] = choices[p]


def put_choices(out: list[str], at: list[int], picks: bytes, choices: tuple[str, ...]) -> None:
    """``_put_choices``, in C when the extension is built."""
    fast = native.native
    if fast is None:
        _put_choices(out, at, picks, choices)
    else:
        fast.put_choices(out, at, picks, choices)


def put_texts(out: list[str], at: list[int], texts: list[str] | bytes, pre: tuple[str, ...],
              post: tuple[str, ...]) -> None:
    """``_put_texts``, in C when the extension is built."""
    fast = native.native
    if fast is None:
        _put_texts(out, at, texts, pre, post)
    else:
        fast.put_texts(out, at, texts, pre, post)


def _json_items(json: bytes) -> list[str]:
    """The item texts of a JSON array of numbers (as ``_native.put_texts`` reads them)."""
    if json[:1] != b"[" or json[-1:] != b"]" or b'"' in json:
        raise ValueError("put_texts: texts must be a JSON array of numbers")
    inner = json[1:-1].decode("ascii")
    items = inner.split(",") if inner else []
    if "" in items:
        raise ValueError("put_texts: texts must be a JSON array of numbers")
    return items


def put_value_texts(out: list[str], at: list[int], values: list[float], pre: tuple[str, ...],
                    post: tuple[str, ...]) -> None:
    """``put_texts(out, at, _float_texts(values), pre, post)`` for floats: orjson's
    text of the values is handed to the C loop as it is (no string for each value,
    ~0.1 s of a scrape of 100,000 moving components), and the few values whose text
    orjson writes otherwise than ``_f`` are written again after. The pieces of
    different ``at`` must not overlap (a chunk's components' do not)."""
    fast = native.native
    if fast is None or not _FAST or not values or not all(map(str.isascii, pre + post)):
        put_texts(out, at, _float_texts(values), pre, post)
        return
    fast.put_texts(out, at, orjson.dumps(values), pre, post)
    nw = len(pre)
    for k in fast.odd_floats(values, _FAST_LO, _FAST_HI):
        i, w = divmod(k, nw)
        out[at[i] + 2 * w] = f"{pre[w]}{_f(values[k])}{post[w]}"


#: A component's ``_C_UP`` line format by its state's number (up: 1.0, any other: 0.0).
_UP_BY_STATE = tuple(_C_UP_FMT[s == _UP_I] for s in range(OUTSIDE + 1))
#: What comes before and after a value's text in the ``Tw`` pieces (``_C_PIECES``).
_AVAIL_PRE = _WIN_LABELS
_AVAIL_POST = (*(f"\n{_C_AVAIL_HEAD}",) * (len(WINDOWS) - 1), "\n")


class _Windowed:
    """A component tracker (or None: no event yet) with the maintenance windows that
    name it; ``view(now)`` is its history with those windows in maintenance."""

    __slots__ = ("tracker", "windows")

    def __init__(self, tracker: Any, windows: tuple[MaintenanceWindow, ...]) -> None:
        self.tracker = tracker
        self.windows = windows

    def view(self, now: float) -> Timeline:
        history = self.tracker.history if self.tracker is not None else Timeline()
        return component_view(history, self.windows, now, max(WINDOWS.values()))


class ServiceLines(_LineCache):
    """The service families at each scrape; a service's values (its ``Row``) reused
    while ``service_report_until`` proves them constant (up throughout). The lines of
    every service are written from the rows at each scrape, a family at a time
    (``service_families``, in C): at 10,000 services whose values move, writing them
    line by line in Python was most of a scrape's time."""

    def __init__(self) -> None:
        super().__init__()
        self._escape_catalog: Catalog | None = None
        self._escape = True
        self._labs: dict[str, str] = {}
        self._custs: dict[str, str] = {}

    def labels(self, catalog: Catalog) -> dict[str, str]:
        """Each service's label text (and customers' text), and whether a name of the
        services' components (those of their blame) needs escaping: once per catalog
        rather than at each scrape."""
        if catalog is not self._escape_catalog:
            self._escape = any(_esc(c) != c for name in catalog.services
                               for c in catalog.components_of(name))
            # prometheus_client writes label names sorted; so does this.
            self._labs = {name: f'kind="{_esc(svc.kind)}",service="{_esc(name)}"'
                          for name, svc in catalog.services.items()}
            self._custs = {name: _esc(",".join(svc.customers))
                           for name, svc in catalog.services.items()}
            self._escape_catalog = catalog
        return self._labs

    def fresh(self, catalog: Catalog, key: str, tracker: Any, now: float
              ) -> tuple[Row, float]:
        return self.fresh_many(catalog, [(key, tracker)], now)[0]

    def moving(self, catalog: Catalog, key: str, tracker: Any, now: float) -> bool:
        return service_report_until(catalog.services[key], tracker, now, catalog) <= now

    def warm(self, catalog: Catalog, key: str, tracker: Any, now: float) -> None:
        # The lines of a moving service are computed at every scrape; after a backlog
        # the refresh built them only to drop them (~0.3 s of 10,000 services).
        warm_service(catalog.services[key], tracker, catalog, now)

    def fresh_many(self, catalog: Catalog, items: list[tuple[str, Any]], now: float
                   ) -> list[tuple[Row, float]]:
        """``fresh`` of each: its row, and until when it holds."""
        self.labels(catalog)
        escape = self._escape
        services = catalog.services
        reports = [service_report(services[key], tracker, catalog, now) for key, tracker in items]
        values = [_service_values(r) for r in reports]
        flat = [v for vs, _ in values for v in vs]
        fast = native.native
        kind = (_plain_floats(flat, _FAST_LO, _FAST_HI) if fast is None
                else fast.plain_floats(flat, _FAST_LO, _FAST_HI))
        return [(service_row(_flags(r), vs, tuple(map(_esc, comps)) if escape else comps,
                             r.restore_target_seconds is not None, kind),
                 service_report_until(services[key], tracker, now, catalog))
                for (key, tracker), r, (vs, comps) in zip(items, reports, values, strict=True)]

    def parts(self, catalog: Catalog, keys: list[str], per_key: list[Any],
              heads: tuple[str, ...]) -> list[Part]:
        labs = self.labels(catalog)
        custs = self._custs
        # A family's lines in parts of SERVICE_KEYS services: a part is encoded and
        # handed to the socket whole (copied on the way), so its size is memory at
        # the peak of a scrape.
        step = SERVICE_KEYS
        columns = [service_families([labs[k] for k in keys[i:i + step]],
                                    [custs[k] for k in keys[i:i + step]], per_key[i:i + step])
                   for i in range(0, len(keys), step)]
        out: list[Part] = []
        for f, h in enumerate(heads):
            out.append(h)
            out += [texts[f] for texts in columns]
        return out


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


def render_chunks(registry: CollectorRegistry) -> tuple[Iterator[bytes], str]:
    """``render`` as byte strings to be written one after the other.

    A million series are ~120 MB of text; joined into one string and then encoded it
    was held three times over. The numbers are all taken here, at one instant; the
    parts are joined and encoded one at a time as the iterator is read, and let go.
    """
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    head = generate_latest(registry)
    collector = getattr(registry, "slawatch_collector", None)
    parts = collector.report_parts() if isinstance(collector, SlawatchCollector) else []
    return _encoded(head, parts), CONTENT_TYPE_LATEST


def _encoded(head: bytes, parts: list[Part]) -> Iterator[bytes]:
    yield head
    parts.reverse()
    while parts:
        yield _text(parts.pop()).encode()

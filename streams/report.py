"""Every number of CONTRACT §3/§4 for one instant ``now``, as plain data.

The worker's collector and JSON views, the tests and the benchmark all read these
dataclasses, so the meaning of each number is computed in exactly one place.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams import native, sla
from streams.accounting import OUTSIDE, accounted, component_view
from streams.calendars import MaintenanceWindow
from streams.catalog import Catalog, Component, Period, Service
from streams.component import ComponentTracker
from streams.service import ServiceTracker
from streams.states import DOWN, MAINTENANCE, UP, State
from streams.timeline import BLOCK, Timeline
from streams.windows import WINDOWS, period_bounds


@dataclass(slots=True)
class ServiceReport:
    name: str
    kind: str
    customers: tuple[str, ...]
    state: State
    availability_ratio: dict[str, float]
    sla_availability_ratio: float
    sla_up_seconds: float
    sla_down_seconds: float
    sla_period: str
    sla_target_ratio: float
    burn_rate: dict[str, float]
    error_budget_remaining_ratio: float
    error_budget_exhaustion_seconds: float
    trending_below_sla: bool
    sla_status: int
    outage_seconds: float
    restore_target_seconds: float | None
    outages_total: int
    downtime_seconds_total: float
    supported_availability_ratio: float
    kpi_gap: bool
    downtime_by_component_seconds: dict[str, float]
    # CONTRACT §6: whether ``now`` is inside the agreed service time (always, for a
    # service agreed 24x7), whether a maintenance window touching it is open, the
    # service time's name and agreed hours a week (None: 24x7), and the planned
    # (maintenance) seconds of the SLA period inside service time.
    in_service_time: bool = True
    scheduled_maintenance: bool = False
    service_time: str | None = None
    service_time_hours_per_week: float | None = None
    sla_planned_seconds: float = 0.0

    @property
    def up(self) -> bool:
        return self.state != DOWN

    @property
    def shown(self) -> str:
        """What a status board shows now: ``down``, ``scheduled_maintenance``,
        ``maintenance``, ``outside_service_time`` or ``up`` (the first that holds;
        a down outside service time is shown as outside: it counts for nothing)."""
        if not self.in_service_time:
            return "outside_service_time"
        if self.state == DOWN:
            return "down"
        if self.state == MAINTENANCE:
            return "scheduled_maintenance" if self.scheduled_maintenance else "maintenance"
        return "up"

    @property
    def maintenance(self) -> bool:
        return self.state == MAINTENANCE

    @property
    def restore_time_exceeded(self) -> bool:
        return self.restore_target_seconds is not None and self.outage_seconds > self.restore_target_seconds

    def to_json(self) -> dict[str, Any]:
        """The `/api/services` form: numbers as in §3, states as words, +Inf as null."""
        return {
            "service": self.name,
            "kind": self.kind,
            "customers": list(self.customers),
            "state": self.state.label,
            "shown": self.shown,
            "in_service_time": self.in_service_time,
            "scheduled_maintenance": self.scheduled_maintenance,
            "service_time": None if self.service_time is None else {
                "name": self.service_time,
                "hours_per_week": self.service_time_hours_per_week,
            },
            "availability": self.availability_ratio,
            "sla": {
                "target": self.sla_target_ratio,
                "period": self.sla_period,
                "availability": self.sla_availability_ratio,
                "up_seconds": self.sla_up_seconds,
                "down_seconds": self.sla_down_seconds,
                "planned_seconds": self.sla_planned_seconds,
                "status": ("meeting", "trending_below", "breached")[self.sla_status],
                "error_budget_remaining": self.error_budget_remaining_ratio,
                "error_budget_exhaustion_seconds": _finite_or_none(
                    self.error_budget_exhaustion_seconds
                ),
            },
            "burn_rate": self.burn_rate,
            "trending_below_sla": self.trending_below_sla,
            "outage_seconds": self.outage_seconds,
            "restore_target_seconds": self.restore_target_seconds,
            "restore_time_exceeded": self.restore_time_exceeded,
            "outages_total": self.outages_total,
            "downtime_seconds_total": self.downtime_seconds_total,
            "supported_availability": self.supported_availability_ratio,
            "kpi_gap": self.kpi_gap,
            "downtime_by_component": self.downtime_by_component_seconds,
        }


@dataclass(slots=True)
class ComponentReport:
    name: str
    team: str | None
    kpi_target_ratio: float | None
    state: State
    availability_ratio: dict[str, float]

    @property
    def up(self) -> bool:
        return self.state == UP


@dataclass(slots=True)
class Outage:
    start: float
    end: float | None  # None while it goes on
    seconds: float
    planned: bool
    components: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "seconds": self.seconds,
            "planned": self.planned,
            "components": list(self.components),
        }


@dataclass(slots=True)
class Report:
    now: float
    services: dict[str, ServiceReport] = field(default_factory=dict)
    components: dict[str, ComponentReport] = field(default_factory=dict)
    events_total: dict[str, int] = field(default_factory=dict)
    unmapped_components: int = 0


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


_WINDOW_NAMES = tuple(WINDOWS)
_WINDOW_SIZES = tuple(WINDOWS.values())
_ALL_UP = dict.fromkeys(_WINDOW_NAMES, 1.0)


_LONGEST = max(_WINDOW_SIZES)
_WINDOWS_BY_SIZE = sorted(zip(_WINDOW_SIZES, _WINDOW_NAMES, strict=True))
_IN_SIZE_ORDER = [name for _, name in _WINDOWS_BY_SIZE] == list(_WINDOW_NAMES)
_UP_I, _DOWN_I = int(UP), int(DOWN)
_CONSTANT = {  # availability in every window of a state held through all of them
    int(UP): _ALL_UP,
    int(MAINTENANCE): _ALL_UP,  # neither up nor down seconds: 1 by definition
    int(DOWN): dict.fromkeys(_WINDOW_NAMES, 0.0),
    OUTSIDE: _ALL_UP,  # outside service time: neither, as maintenance
}


def window_availability(tl: Timeline, now: float) -> dict[str, float]:
    """``sla.availability`` over each window ``[now - W, now]``.

    The same arithmetic as ``tl.window_totals`` (prefix sums at ``now`` and at each
    window start, subtracted), so the same floats, in one loop: the window starts are
    visited from the nearest back, each binary search bounded by the previous one. A
    timeline with no point inside the longest window held one state throughout, and
    its availability is a constant of that state.
    """
    ts = tl.ts
    if not ts:
        return dict(_ALL_UP)  # never anything but up: the common case, kept cheap
    st = tl.st
    j = bisect_right(ts, now) - 1
    if j < 0:
        return dict(_ALL_UP)  # every point is after now: up before the first one
    if ts[j] <= now - _LONGEST or (j == 0 and st[0] == _UP_I):
        return dict(_CONSTANT[st[j]])
    at = tl.sums_at
    first = ts[0]
    dt = now - ts[j]
    s = st[j]
    u, d, _, _ = at(j)
    bu = u + (dt if s == _UP_I else 0.0)
    bd = d + (dt if s == _DOWN_I else 0.0)
    out: dict[str, float] = {}
    hi = j + 1
    for size, name in _WINDOWS_BY_SIZE:
        x = now - size
        if x < first:
            au = x - first
            ad = 0.0
        else:
            i = bisect_right(ts, x, 0, hi) - 1
            hi = i + 1
            dt = x - ts[i]
            s = st[i]
            u, d, _, _ = at(i)
            au = u + (dt if s == _UP_I else 0.0)
            ad = d + (dt if s == _DOWN_I else 0.0)
        up = bu - au
        total = up + (bd - ad)
        out[name] = 1.0 if total <= 0 else up / total
    return out if _IN_SIZE_ORDER else {name: out[name] for name in _WINDOW_NAMES}


_ALL_UP_T = (1.0,) * len(_WINDOW_NAMES)
_CONSTANT_T = {s: tuple(v[name] for name in _WINDOW_NAMES) for s, v in _CONSTANT.items()}
_SIZES_ASC = tuple(size for size, _ in _WINDOWS_BY_SIZE)


def window_availability_many(timelines: Iterable[Timeline], now: float
                             ) -> list[tuple[int, tuple[float, ...]]]:
    """``(int(tl.state_at(now)), window_availability(tl, now) in WINDOWS order)`` per
    timeline, for many timelines at once.

    The same floats as ``window_availability`` (the same operations in the same order:
    the window starts ``now - size`` and ``now - longest`` are the same subtractions,
    computed once), without a call, a dict and the loop set-up per timeline; for the
    collector, which needs the values of every component whose ratios move at each
    scrape.
    """
    if not _IN_SIZE_ORDER:  # pragma: no cover - WINDOWS is listed by size
        return [(int(tl.state_at(now)), tuple(window_availability(tl, now).values()))
                for tl in timelines]
    xs = [now - size for size in _SIZES_ASC]
    nx = len(xs)
    tails = [xs[k:] for k in range(nx + 1)]  # the window starts from the k-th on
    cut = now - _LONGEST
    up_i, down_i = _UP_I, _DOWN_I
    all_up = (up_i, _ALL_UP_T)
    const = {s: (s, v) for s, v in _CONSTANT_T.items()}
    out: list[tuple[int, tuple[float, ...]]] = []
    add = out.append
    fast = native.native
    for tl in timelines:
        ts = tl.ts
        if not ts:
            add(all_up)
            continue
        j = bisect_right(ts, now) - 1
        if j < 0:
            add(all_up)
            continue
        st = tl.st
        s = st[j]
        if ts[j] <= cut or (j == 0 and s == up_i):
            add(const[s])
            continue
        # The sums of a point in the first block are added from the first point, not
        # kept: a short history (most of them, at the first scrape after a start) needs
        # none built.
        if fast is None:
            at = tl.sums_at
        else:  # tl.sums_at without its Python frame at each read
            if j >= BLOCK and j >= tl._valid:
                tl._build()
            at = partial(fast.sums_at, ts, st, tl._sums)
        first = ts[0]
        dt = now - ts[j]
        u, d, _, _ = at(j)
        last = j  # the point whose sums u, d are (several window starts share one)
        bu = u + (dt if s == up_i else 0.0)
        bd = d + (dt if s == down_i else 0.0)
        vals: list[float] = []
        put = vals.append
        hi = j + 1
        k = 0
        for x in xs:
            if x < first:
                break  # and so are the starts of the longer windows
            i = hi - 1  # bisect_right(ts, x, 0, hi) - 1, the same index:
            if ts[i] > x:  # x is before the piece of the previous window start
                i = bisect_right(ts, x, 0, i) - 1
                hi = i + 1
            dt = x - ts[i]
            p = st[i]
            if i != last:
                u, d, _, _ = at(i)
                last = i
            au = u + (dt if p == up_i else 0.0)
            ad = d + (dt if p == down_i else 0.0)
            up = bu - au
            total = up + (bd - ad)
            put(1.0 if total <= 0 else up / total)
            k += 1
        if k < nx:
            # Before the first point (up): au = x - first, ad = 0.0.
            bd0 = bd - 0.0
            vals += [1.0 if (total := (up := bu - (x - first)) + bd0) <= 0 else up / total
                     for x in tails[k]]
        add((s, tuple(vals)))
    return out


def window_availability_flat(timelines: Sequence[Timeline], now: float
                             ) -> tuple[bytes, list[float]]:
    """``window_availability_many`` as columns: the states at ``now``, a byte per
    timeline, and the ratios, ``len(WINDOWS)`` per timeline in WINDOWS order, in one
    flat list; the same floats. In C (``_native.windows_many``, the same steps as the
    loop of ``window_availability_many``) when it is built: the collector's values of
    every moving component at each scrape."""
    fast = native.native
    if fast is None or not _IN_SIZE_ORDER:
        many = window_availability_many(timelines, now)
        return bytes([s for s, _ in many]), [v for _, values in many for v in values]
    xs = [now - size for size in _SIZES_ASC]
    states, values = fast.windows_many(timelines, now, xs, now - _LONGEST)
    return states, values


#: The last ``now`` of ``_window_ratios`` and its window starts (swapped whole).
_starts: tuple[float, list[float]] = (math.nan, [])


def _window_ratios(tl: Timeline, now: float) -> dict[str, float]:
    """``window_availability(tl, now)``: the same floats, in C (``_native.windows_many``,
    whose loop is ``window_availability_many``'s) when it is built."""
    fast = native.native
    if fast is None or not _IN_SIZE_ORDER:
        return window_availability(tl, now)
    global _starts
    at, xs = _starts
    if at != now:  # the services of one scrape share one now
        xs = [now - size for size in _SIZES_ASC]
        _starts = (now, xs)
    _, values = fast.windows_many((tl,), now, xs, now - _LONGEST)
    return dict(zip(_WINDOW_NAMES, values, strict=True))


_SORTED: dict[frozenset[str], tuple[str, ...]] = {}


def _sorted_names(names: frozenset[str]) -> tuple[str, ...]:
    """``tuple(sorted(names))``, remembered (a catalog's sets are built once)."""
    out = _SORTED.get(names)
    if out is None:
        if len(_SORTED) > 1 << 17:  # catalogs come and go
            _SORTED.clear()
        out = _SORTED[names] = tuple(sorted(names))
    return out


def _reach(period: Period, now: float) -> float:
    """How far back from ``now`` a service's numbers read."""
    start, _ = period_bounds(period, now)
    return max(_LONGEST, now - start)


def service_report(
    svc: Service, tracker: ServiceTracker | None, catalog: Catalog, now: float
) -> ServiceReport:
    """All numbers of one service; ``tracker`` None means it has seen no event yet."""
    cal = catalog.calendar(svc.name)
    pruned_outages, pruned_downtime = (
        (tracker.pruned_outages, tracker.pruned_downtime) if tracker is not None else (0, 0.0))
    if cal is None:
        tl = tracker.timeline if tracker is not None else Timeline()
        state = tl.state_at(now)
        has_history = tracker is not None
    else:
        # CONTRACT §6: the same arithmetic over the accounted history (service time
        # and maintenance windows applied; see streams.accounting).
        acc = accounted(tracker, cal, now, _reach(svc.period, now))
        tl = acc.timeline
        state = acc.effective.state_at(now)
        has_history = True
    avail = _window_ratios(tl, now)
    start, period_len = period_bounds(svc.period, now)
    up, down, planned = tl.totals(start, now)  # the same floats as tl.up_down
    sla_avail = sla.availability(up, down)
    burn = {w: sla.burn_rate(a, svc.target) for w, a in avail.items()}
    breached = sla_avail < svc.target
    trending = sla.trending_below(burn, period_len, breached)

    by_component = dict.fromkeys(_sorted_names(catalog.components_of(svc.name)), 0.0)
    outages = 0
    downtime_total = 0.0
    outage_seconds = 0.0
    if has_history:
        if down:
            _attribute(tl, start, now, by_component)
        count, ended, outage_seconds = tl.outage_counters(now)
        outages, downtime_total = count + pruned_outages, ended + pruned_downtime

    supported_avail = catalog.supported_availability(svc.name)
    st = cal.service_time if cal is not None else None
    return ServiceReport(
        name=svc.name,
        kind=svc.kind,
        customers=svc.customers,
        state=state,
        availability_ratio=avail,
        sla_availability_ratio=sla_avail,
        sla_up_seconds=up,
        sla_down_seconds=down,
        sla_period=_period_label(svc.period),
        sla_target_ratio=svc.target,
        burn_rate=burn,
        error_budget_remaining_ratio=sla.budget_remaining(sla_avail, svc.target),
        error_budget_exhaustion_seconds=sla.exhaustion_seconds(up, down, svc.target, avail["1h"]),
        trending_below_sla=trending,
        sla_status=sla.status(breached, trending),
        outage_seconds=outage_seconds,
        restore_target_seconds=svc.restore_time,
        outages_total=outages,
        downtime_seconds_total=downtime_total,
        supported_availability_ratio=supported_avail,
        kpi_gap=supported_avail < svc.target,
        downtime_by_component_seconds=by_component,
        in_service_time=cal is None or cal.in_service_time(now),
        scheduled_maintenance=cal is not None and cal.scheduled_maintenance(now),
        service_time=None if st is None else st.name,
        service_time_hours_per_week=None if st is None else st.hours_per_week,
        sla_planned_seconds=planned,
    )


def warm_service(svc: Service, tracker: ServiceTracker | None, catalog: Catalog,
                 now: float) -> None:
    """Build now what ``service_report(svc, tracker, catalog, now)`` builds when first
    asked and keeps until the tracker changes (the timeline's prefix sums, and its
    attribution index when the SLA period holds down seconds; a calendar's accounted
    timelines), without the report: what a scrape's report of a service whose values
    move then only reads."""
    if tracker is None:
        return
    if catalog.calendar(svc.name) is not None:
        service_report(svc, tracker, catalog, now)  # keeps its accounted timelines
        return
    tl = tracker.timeline
    start, _ = period_bounds(svc.period, now)
    tl.warm(attribution=bool(tl.totals(start, now)[1]))  # down seconds: blame is read


_LABELS: dict[Period, str] = {}


def _period_label(period: Period) -> str:
    """``period.label``, remembered (a period is a frozen value)."""
    label = _LABELS.get(period)
    if label is None:
        if len(_LABELS) > 1024:  # catalogs come and go; their periods are few
            _LABELS.clear()
        label = _LABELS[period] = period.label
    return label


def _attribute(tl: Timeline, start: float, end: float, by_component: dict[str, float]) -> None:
    """Split each down second in [start, end] among its blamed components (§4)."""
    tl.attribute(start, end, by_component)


def outages(svc: Service, tracker: ServiceTracker | None, now: float,
            catalog: Catalog | None = None) -> list[Outage]:
    """Planned and unplanned outages that overlap the SLA period, oldest first.

    An outage is a maximal run of `down` (unplanned) or `maintenance` (planned); its
    ``seconds`` is its whole length up to ``now``, even where it began before the period.
    With the ``catalog``'s calendars (CONTRACT §6), runs inside service time only.
    """
    if catalog is not None and (cal := catalog.calendar(svc.name)) is not None:
        tl = accounted(tracker, cal, now, _reach(svc.period, now)).timeline
    elif tracker is None:
        return []
    else:
        tl = tracker.timeline
    start, _ = period_bounds(svc.period, now)
    out: list[Outage] = []
    ts, st, tix, table = tl.ts, tl.st, tl.tag, tl.tags
    i, n = 0, len(ts)
    while i < n and ts[i] <= now:
        if st[i] == UP or st[i] == OUTSIDE:
            i += 1
            continue
        kind = st[i]
        begin = ts[i]
        blamed: set[str] = set()
        j = i
        while j < n and ts[j] <= now and st[j] == kind:
            blamed.update(table[tix[j]])
            j += 1
        end = ts[j] if j < n and ts[j] <= now else None
        if (end if end is not None else now) > start:
            out.append(Outage(begin, end, (end if end is not None else now) - begin,
                              kind == MAINTENANCE, tuple(sorted(blamed))))
        i = j
    return out


def component_report(comp: Component, tracker: ComponentTracker | None, now: float,
                     windows: tuple[MaintenanceWindow, ...] = ()) -> ComponentReport:
    """A component's numbers; ``windows``: the maintenance windows naming it (§6), in
    which it counts as in maintenance whatever its events say."""
    if windows:
        tl = component_view(tracker.history if tracker is not None else Timeline(), windows,
                            now, _LONGEST)
        return ComponentReport(name=comp.id, team=comp.team, kpi_target_ratio=comp.kpi,
                               state=tl.state_at(now), availability_ratio=window_availability(tl, now))
    if tracker is None:  # no event yet: up all along
        return ComponentReport(name=comp.id, team=comp.team, kpi_target_ratio=comp.kpi, state=UP,
                               availability_ratio=dict(_ALL_UP))
    tl = tracker.history
    return ComponentReport(
        name=comp.id,
        team=comp.team,
        kpi_target_ratio=comp.kpi,
        state=tl.state_at(now),
        availability_ratio=window_availability(tl, now),
    )


def component_lines_until(tracker: ComponentTracker | None, now: float) -> float:
    """Until when ``component_report(comp, tracker, t)`` equals its value at ``now``.

    Every ``t`` in ``[now, until)`` gives the same state and the same availability
    floats, as long as the tracker itself does not change; ``until == now`` when some
    window holds both up and down seconds (its ratio moves with ``t``). A window's ratio
    is exactly 1.0 while no down piece of positive length reaches into it (the down
    prefix sums at both ends are then the same float: only 0.0 was added between), and
    exactly 0.0 while it holds only down pieces (the up sums are equal, down > 0).
    The pieces do not change before the first point after ``now``, so that bounds it.
    """
    if tracker is None:
        return math.inf
    tl = tracker.history
    fast = native.native
    if fast is not None:
        return fast.lines_until(tl.ts, tl.st, now, _WINDOW_SIZES)  # type: ignore[no-any-return]
    return _lines_until(tl.ts, tl.st, now)


def component_lines_codes_many(trackers: list[ComponentTracker | None], now: float
                               ) -> tuple[Sequence[float], bytes]:
    """``component_lines_until`` of each tracker, and for each two bytes: the windows
    (``WINDOWS`` order) whose ratio is 0.0 as bits (the others are 1.0) and the state
    at ``now`` (``State``), what ``window_availability_many`` gives where the until
    is after ``now``; in one C call when it is built."""
    fast = native.native
    if fast is not None:
        untils, codes = fast.lines_codes_many(trackers, now, _WINDOW_SIZES)
        return array("d", untils), codes
    out: list[float] = []
    code = bytearray()
    for t in trackers:
        if t is None:
            out.append(math.inf)
            code += bytes((0, _UP_I))
            continue
        until, zeros, state = _lines_until_code(t.history.ts, t.history.st, now)
        out.append(until)
        code += bytes((zeros, state))
    return out, bytes(code)


#: The values of each window by ``component_lines_codes_many``'s bits of 0.0 windows.
CODE_VALUES = tuple(tuple(0.0 if z >> w & 1 else 1.0 for w in range(len(WINDOWS)))
                    for z in range(1 << len(WINDOWS)))


def _lines_until(ts: Sequence[float], st: Sequence[int], now: float) -> float:
    """``component_lines_until`` over a history's columns (``_native.lines_until``'s
    twin)."""
    return _lines_until_code(ts, st, now)[0]


def _lines_until_code(ts: Sequence[float], st: Sequence[int], now: float
                      ) -> tuple[float, int, int]:
    """``_lines_until``, the windows whose ratio is then 0.0 (bit w) and the state at
    ``now`` (``_native.lines_codes_many``'s twin, per history)."""
    n = len(ts)
    if not n:
        return math.inf, 0, _UP_I
    j = bisect_right(ts, now) - 1
    until = ts[j + 1] if j + 1 < n else math.inf
    if j < 0:
        return until, 0, _UP_I  # up before the first point: every ratio 1.0
    # End of the latest positive piece of each kind that reaches into [.., now]:
    # the piece holding `now` reaches past it (it grows with t).
    down_end = other_end = -math.inf
    if st[j] == _DOWN_I:
        down_end = math.inf
    else:
        other_end = math.inf
    k = j - 1
    while k >= 0 and (down_end == -math.inf or other_end == -math.inf):
        end = ts[k + 1]
        if end > ts[k]:  # zero-length pieces last no time
            if st[k] == _DOWN_I:
                if down_end == -math.inf:
                    down_end = end
            elif other_end == -math.inf:
                other_end = end
        k -= 1
    if other_end == -math.inf:
        other_end = ts[0]  # before the first point: up
    zeros = 0
    for w, size in enumerate(_WINDOW_SIZES):
        x = now - size
        if down_end <= x:
            continue  # no down second in any window [t - size, t], t in [now, until)
        if other_end <= x:
            zeros |= 1 << w
            continue  # only down seconds (and some): ratio 0.0
        return now, 0, int(st[j])
    return until, zeros, int(st[j])


def service_report_until(svc: Service, tracker: ServiceTracker | None, now: float,
                         catalog: Catalog | None = None) -> float:
    """Until when ``service_report(svc, tracker, catalog, t)`` equals its value at ``now``
    (same tracker, same catalog); ``now`` unless the service was up throughout.

    Only the simplest case is proved: every piece of positive length from the start of
    the SLA period (or of the longest window, if earlier) on is `up`, so no down or
    maintenance second is in anything read. Then every ratio is exactly 1.0 (no down
    second: equal down sums; up > 0), burn rates 0, the budget whole, its exhaustion
    +Inf, no outage and counters of ended outages only. The values hold until the
    first point after ``now`` and, for a calendar month, until the month ends.
    """
    if catalog is not None and catalog.calendar(svc.name) is not None:
        return now  # calendars move numbers without events (CONTRACT §6): never proved
    start, length = period_bounds(svc.period, now)
    if now <= start:
        return now  # no up second yet in the period: exhaustion is 0, soon +Inf
    until = start + length if svc.period.calendar_month else math.inf
    if tracker is None:
        return until
    tl = tracker.timeline
    ts, st = tl.ts, tl.st
    n = len(ts)
    j = bisect_right(ts, now) - 1
    if j + 1 < n and ts[j + 1] < until:
        until = ts[j + 1]
    if j < 0:
        return until  # up before the first point
    if st[j] != _UP_I:
        return now
    reach = min(start, now - _LONGEST)
    k = j - 1
    while k >= 0 and ts[k + 1] > reach:
        if st[k] != _UP_I and ts[k + 1] > ts[k]:
            return now
        k -= 1
    return until

"""Every number of CONTRACT §3/§4 for one instant ``now``, as plain data.

The worker's collector and JSON views, the tests and the benchmark all read these
dataclasses, so the meaning of each number is computed in exactly one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from slawatch.streams import sla
from slawatch.streams.catalog import Catalog, Component, Service
from slawatch.streams.component import ComponentTracker
from slawatch.streams.service import ServiceTracker
from slawatch.streams.states import DOWN, MAINTENANCE, UP, State
from slawatch.streams.timeline import Timeline
from slawatch.streams.windows import WINDOWS, period_bounds


@dataclass(slots=True)
class ServiceReport:
    name: str
    kind: str
    customers: tuple[str, ...]
    state: State
    availability: dict[str, float]
    sla_availability: float
    sla_up_seconds: float
    sla_down_seconds: float
    sla_period: str
    target: float
    burn_rate: dict[str, float]
    error_budget_remaining: float
    error_budget_exhaustion_seconds: float
    trending_below_sla: bool
    sla_status: int
    outage_seconds: float
    restore_target_seconds: float | None
    outages_total: int
    downtime_seconds_total: float
    supported_availability: float
    kpi_gap: bool
    downtime_by_component: dict[str, float]

    @property
    def up(self) -> bool:
        return self.state != DOWN

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
            "availability": self.availability,
            "sla": {
                "target": self.target,
                "period": self.sla_period,
                "availability": self.sla_availability,
                "up_seconds": self.sla_up_seconds,
                "down_seconds": self.sla_down_seconds,
                "status": ("meeting", "trending_below", "breached")[self.sla_status],
                "error_budget_remaining": self.error_budget_remaining,
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
            "supported_availability": self.supported_availability,
            "kpi_gap": self.kpi_gap,
            "downtime_by_component": self.downtime_by_component,
        }


@dataclass(slots=True)
class ComponentReport:
    name: str
    team: str | None
    kpi: float | None
    state: State
    availability: dict[str, float]

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
    events: dict[str, int] = field(default_factory=dict)
    unmapped_components: int = 0


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


_WINDOW_NAMES = tuple(WINDOWS)
_WINDOW_SIZES = tuple(WINDOWS.values())
_ALL_UP = dict.fromkeys(_WINDOW_NAMES, 1.0)


def _window_availability(tl: Timeline, now: float) -> dict[str, float]:
    if not tl.ts or (len(tl.ts) == 1 and tl.st[0] == UP):
        return dict(_ALL_UP)  # never anything but up: the common case, kept cheap
    return {
        name: sla.availability(up, down)
        for name, (up, down, _) in zip(_WINDOW_NAMES, tl.window_totals(now, _WINDOW_SIZES), strict=True)
    }


def service_report(
    svc: Service, tracker: ServiceTracker | None, catalog: Catalog, now: float
) -> ServiceReport:
    """All numbers of one service; ``tracker`` None means it has seen no event yet."""
    tl = tracker.timeline if tracker is not None else Timeline()
    avail = _window_availability(tl, now)
    start, period_len = period_bounds(svc.period, now)
    up, down, _ = tl.totals(start, now)
    sla_avail = sla.availability(up, down)
    burn = {w: sla.burn_rate(a, svc.target) for w, a in avail.items()}
    breached = sla_avail < svc.target
    trending = sla.trending_below(burn, period_len, breached)
    state = tl.state_at(now)

    by_component = dict.fromkeys(sorted(catalog.components_of(svc.name)), 0.0)
    outages = 0
    downtime_total = 0.0
    outage_seconds = 0.0
    if tracker is not None:
        if down:
            for a, b, tag in tl.down_points(start, now):
                if tag:
                    share = (b - a) / len(tag)
                    for comp in tag:
                        by_component[comp] = by_component.get(comp, 0.0) + share
        outages, downtime_total, outage_seconds = tracker.counters(now)

    supported_avail = catalog.supported_availability(svc.name)
    return ServiceReport(
        name=svc.name,
        kind=svc.kind,
        customers=svc.customers,
        state=state,
        availability=avail,
        sla_availability=sla_avail,
        sla_up_seconds=up,
        sla_down_seconds=down,
        sla_period=svc.period.label,
        target=svc.target,
        burn_rate=burn,
        error_budget_remaining=sla.budget_remaining(sla_avail, svc.target),
        error_budget_exhaustion_seconds=sla.exhaustion_seconds(up, down, svc.target, avail["1h"]),
        trending_below_sla=trending,
        sla_status=sla.status(breached, trending),
        outage_seconds=outage_seconds,
        restore_target_seconds=svc.restore_time,
        outages_total=outages,
        downtime_seconds_total=downtime_total,
        supported_availability=supported_avail,
        kpi_gap=supported_avail < svc.target,
        downtime_by_component=by_component,
    )


def outages(svc: Service, tracker: ServiceTracker | None, now: float) -> list[Outage]:
    """Planned and unplanned outages that overlap the SLA period, oldest first.

    An outage is a maximal run of `down` (unplanned) or `maintenance` (planned); its
    ``seconds`` is its whole length up to ``now``, even where it began before the period.
    """
    if tracker is None:
        return []
    tl = tracker.timeline
    start, _ = period_bounds(svc.period, now)
    out: list[Outage] = []
    ts, st, tags = tl.ts, tl.st, tl.tag
    i, n = 0, len(ts)
    while i < n and ts[i] <= now:
        if st[i] == UP:
            i += 1
            continue
        kind = st[i]
        begin = ts[i]
        blamed: set[str] = set()
        j = i
        while j < n and ts[j] <= now and st[j] == kind:
            blamed.update(tags[j])
            j += 1
        end = ts[j] if j < n and ts[j] <= now else None
        if (end if end is not None else now) > start:
            out.append(Outage(begin, end, (end if end is not None else now) - begin,
                              kind == MAINTENANCE, tuple(sorted(blamed))))
        i = j
    return out


def component_report(comp: Component, tracker: ComponentTracker | None, now: float) -> ComponentReport:
    tl = tracker.history if tracker is not None else Timeline()
    return ComponentReport(
        name=comp.id,
        team=comp.team,
        kpi=comp.kpi,
        state=tl.state_at(now),
        availability=_window_availability(tl, now),
    )

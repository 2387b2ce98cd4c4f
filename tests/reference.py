"""A brute-force reference for the numbers of CONTRACT §1 and §3.

Deliberately naive: it keeps every event, rebuilds each component's step function from
scratch, and integrates a service's state by evaluating the whole `requires` tree at
every breakpoint (every event time of every transitive component). No incremental
state, no pruning, no cleverness — if the engine and this file disagree, read this
file first: it should be obviously right.

It works on the catalog in its raw (YAML-decoded) dict form, with its own tiny parser,
so that it does not share code with the engine's catalog module.
"""

from __future__ import annotations

import bisect
import calendar
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

UP, MAINTENANCE, DOWN = "up", "maintenance", "down"
RANK = {UP: 0, MAINTENANCE: 1, DOWN: 2}

WINDOWS: dict[str, float] = {
    "5m": 300.0,
    "30m": 1800.0,
    "1h": 3600.0,
    "6h": 6 * 3600.0,
    "1d": 86400.0,
    "3d": 3 * 86400.0,
    "7d": 7 * 86400.0,
    "30d": 30 * 86400.0,
}

#: (long window, short window, fraction of the period's budget), CONTRACT §3.
TREND_PAIRS: tuple[tuple[str, str, float], ...] = (
    ("1h", "5m", 0.02),
    ("6h", "30m", 0.05),
    ("3d", "6h", 0.10),
)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    return float(text[:-1]) * _UNITS[text[-1]]


# --------------------------------------------------------------------------- catalog

# A normalized requirement: ("c", id) | ("all", reqs) | ("any", reqs)
# | ("atl", k, reqs) | ("svc", name)
Req = tuple


def normalize(req: object) -> Req:
    if isinstance(req, str):
        return ("c", req)
    assert isinstance(req, Mapping), req
    if "any" in req:
        return ("any", tuple(normalize(r) for r in req["any"]))
    if "all" in req:
        return ("all", tuple(normalize(r) for r in req["all"]))
    if "at_least" in req:
        return ("atl", int(req["at_least"]), tuple(normalize(r) for r in req["of"]))
    if "service" in req:
        return ("svc", str(req["service"]))
    raise AssertionError(f"unknown requirement {req!r}")


# --------------------------------------------------------------------------- calendars
# CONTRACT §6 by brute force: a second is in a weekly schedule when the local wall
# clock shows a time inside one of its ranges (on that weekday, or the previous day's
# range that runs past midnight) on a day that is not an exception. Where that
# changes is found by testing every quarter hour: the generated calendars use times
# on quarter hours, and every zone used is a whole number of quarter hours from UTC
# (its changes of offset too), so membership is constant between grid points.

GRID = 900.0
DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _hhmm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


@dataclass
class RefSchedule:
    zone: str
    rules: list[tuple[frozenset[int], int, int]]
    except_days: frozenset[str]
    _changes: dict[tuple[float, float], list[float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, zone: str, weekly: Iterable[str], except_days: Iterable[object] = ()) -> RefSchedule:
        rules = []
        for text in weekly:
            days_text, times = text.split()
            a_text, b_text = times.split("-")
            days: set[int] = set()
            for part in days_text.split(","):
                ends = [DAY_NAMES.index(p) for p in part.split("-")]
                k = ends[0]
                days.add(k)
                while k != ends[-1]:
                    k = (k + 1) % 7
                    days.add(k)
            a, b = _hhmm(a_text), _hhmm(b_text)
            assert a % 15 == 0 and b % 15 == 0, "the quarter-hour scan needs quarter hours"
            rules.append((frozenset(days), a, b))
        return cls(zone, rules, frozenset(str(d) for d in except_days))

    def inside(self, t: float) -> bool:
        lt = datetime.fromtimestamp(t, ZoneInfo(self.zone))
        if lt.date().isoformat() in self.except_days:
            return False
        minute = (lt.hour * 3600 + lt.minute * 60 + lt.second + lt.microsecond / 1e6) / 60.0
        today = lt.weekday()
        for days, a, b in self.rules:
            if a < b:
                if today in days and a <= minute < b:
                    return True
            else:  # runs past midnight
                if today in days and minute >= a:
                    return True
                if (today - 1) % 7 in days and minute < b:
                    return True
        return False

    def changes(self, lo: float, hi: float) -> list[float]:
        """Grid points in (lo, hi] where `inside` differs from the point before."""
        key = (lo, hi)
        if key not in self._changes:
            out = []
            t = math.floor(lo / GRID) * GRID
            prev = self.inside(t)
            while t < hi:
                t += GRID
                cur = self.inside(t)
                if cur != prev:
                    out.append(t)
                prev = cur
            self._changes[key] = out
        return self._changes[key]


@dataclass
class RefWindow:
    components: frozenset[str]
    services: frozenset[str]
    schedule: RefSchedule | None
    start: float | None
    end: float | None

    def open(self, t: float) -> bool:
        if self.schedule is not None:
            return self.schedule.inside(t)
        assert self.start is not None and self.end is not None
        return self.start <= t < self.end

    def changes(self, lo: float, hi: float) -> list[float]:
        if self.schedule is not None:
            return self.schedule.changes(lo, hi)
        return [x for x in (self.start, self.end) if x is not None]


def _instant(value: object) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@dataclass
class RefService:
    name: str
    target: float
    period: float | None  # seconds, or None for the calendar month
    restore_time: float | None  # None: no restore_time given
    requires: tuple[Req, ...]
    service_time: RefSchedule | None = None


@dataclass
class RefCatalog:
    kpi: dict[str, float | None]
    services: dict[str, RefService]
    windows: list[RefWindow] = field(default_factory=list)

    # ---- §6
    def in_service_time(self, service: str, t: float) -> bool:
        st = self.services[service].service_time
        return st is None or st.inside(t)

    def forced_component(self, comp: str, t: float) -> bool:
        return any(comp in w.components and w.open(t) for w in self.windows)

    def forced_service(self, service: str, t: float) -> bool:
        return any(service in w.services and w.open(t) for w in self.windows)

    def required_services(self, service: str) -> set[str]:
        out: set[str] = set()

        def walk(req: Req) -> None:
            if req[0] == "svc":
                out.add(req[1])
                for r in self.services[req[1]].requires:
                    walk(r)
            elif req[0] != "c":
                for r in req[-1]:
                    walk(r)

        for r in self.services[service].requires:
            walk(r)
        return out

    def scheduled_maintenance(self, service: str, t: float) -> bool:
        svcs = {service} | self.required_services(service)
        comps = self.components_of(service)
        return any(w.open(t) and (w.services & svcs or w.components & comps) for w in self.windows)

    def calendar_breaks(self, lo: float, hi: float) -> list[float]:
        out: set[float] = set()
        for svc in self.services.values():
            if svc.service_time is not None:
                out.update(svc.service_time.changes(lo, hi))
        for w in self.windows:
            out.update(w.changes(lo, hi))
        return sorted(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RefCatalog:
        comps = data.get("components") or {}
        assert isinstance(comps, Mapping)
        kpi: dict[str, float | None] = {}
        for cid, spec in comps.items():
            k = (spec or {}).get("kpi") if isinstance(spec, Mapping) else None
            kpi[str(cid)] = None if k is None else float(k)
        services: dict[str, RefService] = {}
        svcs = data.get("services") or {}
        assert isinstance(svcs, Mapping)
        times = {
            str(n): RefSchedule.parse(t["timezone"], t["weekly"], t.get("except") or ())
            for n, t in (data.get("service_times") or {}).items()  # type: ignore[attr-defined]
        }
        for name, spec in svcs.items():
            sla = spec["sla"]
            period = None if sla["period"] == "month" else duration(sla["period"])
            services[str(name)] = RefService(
                name=str(name),
                target=float(sla["target"]),
                period=period,
                restore_time=duration(spec["restore_time"]) if "restore_time" in spec else None,
                requires=tuple(normalize(r) for r in spec["requires"]),
                service_time=times[sla["service_time"]] if sla.get("service_time") else None,
            )
        windows = []
        for w in data.get("maintenance") or []:  # type: ignore[attr-defined]
            sched = (RefSchedule.parse(w.get("timezone", "UTC"), w["weekly"])
                     if "weekly" in w else None)
            windows.append(RefWindow(
                frozenset(w.get("components") or ()), frozenset(w.get("services") or ()), sched,
                None if sched else _instant(w["start"]), None if sched else _instant(w["end"])))
        return cls(kpi, services, windows)

    def components_of(self, service: str) -> set[str]:
        out: set[str] = set()

        def walk(req: Req) -> None:
            if req[0] == "c":
                out.add(req[1])
            elif req[0] == "svc":
                for r in self.services[req[1]].requires:
                    walk(r)
            else:
                for r in req[-1]:
                    walk(r)

        for r in self.services[service].requires:
            walk(r)
        return out

    def mapped_components(self) -> set[str]:
        out: set[str] = set()
        for name in self.services:
            out |= self.components_of(name)
        return out

    # ---- supported availability (independent failures, every kpi just met)
    def supported(self, service: str) -> float:
        return math.prod(self._supported(r) for r in self.services[service].requires)

    def _supported(self, req: Req) -> float:
        kind = req[0]
        if kind == "c":
            k = self.kpi.get(req[1])
            return 1.0 if k is None else k
        if kind == "svc":
            return self.supported(req[1])
        probs = [self._supported(r) for r in req[-1]]
        if kind == "all":
            return math.prod(probs)
        if kind == "any":
            return 1.0 - math.prod(1.0 - p for p in probs)
        # at_least k of n: Poisson-binomial tail by dynamic programming
        k = req[1]
        dist = [1.0]  # dist[j] = P(exactly j up) among the children seen so far
        for p in probs:
            nxt = [0.0] * (len(dist) + 1)
            for j, q in enumerate(dist):
                nxt[j] += q * (1.0 - p)
                nxt[j + 1] += q * p
            dist = nxt
        return sum(dist[k:])


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Ev:
    component: str
    state: str  # up | maintenance | down
    ts: float


def classify(
    catalog: RefCatalog, arrivals: Sequence[Ev], allowed_lateness: float = 600.0
) -> tuple[list[str], list[Ev]]:
    """§1 outcomes in arrival order (valid events only), and the events that shape
    the step functions (accepted ones, and the in-order ones of unmapped components)."""
    mapped = catalog.mapped_components()
    newest: dict[str, float] = {}
    applied_keys: dict[str, set[tuple[str, float]]] = {}
    outcomes: list[str] = []
    applied: list[Ev] = []
    for e in arrivals:
        outcome = "accepted"
        top = newest.get(e.component)
        keys = applied_keys.setdefault(e.component, set())
        if top is not None and e.ts < top - allowed_lateness:
            outcome = "late"
        elif (e.state, e.ts) in keys:
            outcome = "duplicate"
        else:
            # an unmapped component's state is still tracked, by the same rules
            keys.add((e.state, e.ts))
            newest[e.component] = e.ts if top is None else max(top, e.ts)
            applied.append(e)
        # order: unmapped -> late -> duplicate -> accepted
        outcomes.append("unmapped" if e.component not in mapped else outcome)
    return outcomes, applied


# --------------------------------------------------------------------------- state


class StepFunctions:
    """Every component's state over time, from all its applied events."""

    def __init__(self, events: Iterable[Ev]) -> None:
        by_comp: dict[str, dict[float, str]] = {}
        for e in events:
            at = by_comp.setdefault(e.component, {})
            old = at.get(e.ts)
            # same instant, several states: the most severe one holds
            if old is None or RANK[e.state] > RANK[old]:
                at[e.ts] = e.state
        self.times: dict[str, list[float]] = {}
        self.states: dict[str, list[str]] = {}
        for comp, at in by_comp.items():
            ts = sorted(at)
            self.times[comp] = ts
            self.states[comp] = [at[t] for t in ts]

    def at(self, comp: str, t: float) -> str:
        ts = self.times.get(comp)
        if not ts:
            return UP  # no news is good news
        i = bisect.bisect_right(ts, t) - 1
        return UP if i < 0 else self.states[comp][i]

    def breakpoints(self, comps: Iterable[str]) -> list[float]:
        out: set[float] = set()
        for c in comps:
            out.update(self.times.get(c, ()))
        return sorted(out)


class Evaluator:
    def __init__(self, catalog: RefCatalog, steps: StepFunctions, now: float | None = None) -> None:
        self.cat = catalog
        self.steps = steps
        # Where calendars change, from well before any window or event to just past now.
        self.cal_breaks: list[float] = []
        if now is not None and (catalog.windows or any(
                s.service_time for s in catalog.services.values())):
            first = min((ts[0] for ts in steps.times.values() if ts), default=now)
            lo = math.floor((min(first, now - 40 * 86400.0) - GRID) / GRID) * GRID
            hi = math.ceil((now + GRID) / GRID) * GRID
            self.cal_breaks = catalog.calendar_breaks(lo, hi)

    def breaks(self, comps: Iterable[str]) -> list[float]:
        return sorted(set(self.steps.breakpoints(comps)) | set(self.cal_breaks))

    def comp_state(self, comp: str, t: float) -> str:
        """A component's state, maintenance while a window naming it is open (§6)."""
        return MAINTENANCE if self.cat.forced_component(comp, t) else self.steps.at(comp, t)

    def holds(self, req: Req, t: float, maintenance_is_up: bool) -> bool:
        kind = req[0]
        if kind == "c":
            s = self.comp_state(req[1], t)
            return s == UP or (s == MAINTENANCE and maintenance_is_up)
        if kind == "svc":
            if self.cat.forced_service(req[1], t):  # a maintenance node
                return maintenance_is_up
            return all(
                self.holds(r, t, maintenance_is_up) for r in self.cat.services[req[1]].requires
            )
        results = [self.holds(r, t, maintenance_is_up) for r in req[-1]]
        if kind == "all":
            return all(results)
        if kind == "any":
            return any(results)
        return sum(results) >= req[1]

    def service_state(self, service: str, t: float) -> str:
        if self.cat.forced_service(service, t):
            return MAINTENANCE
        reqs = self.cat.services[service].requires
        if not all(self.holds(r, t, True) for r in reqs):
            return DOWN
        if not all(self.holds(r, t, False) for r in reqs):
            return MAINTENANCE
        return UP

    def blamed(self, service: str, t: float) -> set[str]:
        """Walk from the top, descend only into failing requirements, collect `down`."""
        out: set[str] = set()

        def walk(req: Req) -> None:
            kind = req[0]
            if kind == "c":
                if self.comp_state(req[1], t) == DOWN:
                    out.add(req[1])
                return
            children = self.cat.services[req[1]].requires if kind == "svc" else req[-1]
            for r in children:
                if not self.holds(r, t, True):
                    walk(r)

        for r in self.cat.services[service].requires:
            if not self.holds(r, t, True):
                walk(r)
        return out


# --------------------------------------------------------------------------- integration


@dataclass
class Tally:
    up: float = 0.0
    down: float = 0.0
    maintenance: float = 0.0
    blame: dict[str, float] = field(default_factory=dict)

    @property
    def availability(self) -> float:
        total = self.up + self.down
        return 1.0 if total == 0 else self.up / total


def _pieces(breaks: list[float], start: float, end: float) -> list[tuple[float, float]]:
    """[start, end] cut at every breakpoint strictly inside it."""
    cuts = [start] + [b for b in breaks if start < b < end] + [end]
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def service_tally(
    ev: Evaluator, service: str, start: float, end: float, *, with_blame: bool = False
) -> Tally:
    tally = Tally()
    if end <= start:
        return tally
    breaks = ev.breaks(ev.cat.components_of(service))
    for a, b in _pieces(breaks, start, end):
        if not ev.cat.in_service_time(service, a):
            continue  # outside service time: neither up nor down nor planned (§6)
        s = ev.service_state(service, a)
        if s == UP:
            tally.up += b - a
        elif s == MAINTENANCE:
            tally.maintenance += b - a
        else:
            tally.down += b - a
            if with_blame:
                who = ev.blamed(service, a)
                assert who, f"{service} down at {a} with nobody to blame"
                for c in who:
                    tally.blame[c] = tally.blame.get(c, 0.0) + (b - a) / len(who)
    return tally


def component_tally(ev: Evaluator, comp: str, start: float, end: float) -> Tally:
    tally = Tally()
    if end <= start:
        return tally
    for a, b in _pieces(ev.breaks([comp]), start, end):
        s = ev.comp_state(comp, a)
        setattr(tally, s, getattr(tally, s) + (b - a))
    return tally


def down_runs(ev: Evaluator, service: str, now: float) -> list[tuple[float, float | None]]:
    """Maximal unplanned-down runs of the service inside service time up to `now`:
    (start, end or None)."""
    breaks = [b for b in ev.breaks(ev.cat.components_of(service)) if b <= now]
    runs: list[tuple[float, float | None]] = []
    start: float | None = None
    for b in breaks:  # before the first breakpoint everything is up
        down = ev.service_state(service, b) == DOWN and ev.cat.in_service_time(service, b)
        if down and start is None:
            start = b
        elif not down and start is not None:
            runs.append((start, b))
            start = None
    if start is not None:
        runs.append((start, None))
    return runs


# --------------------------------------------------------------------------- SLA math


def month_start(now: float, zone: str = "UTC") -> float:
    tz = ZoneInfo(zone)
    d = datetime.fromtimestamp(now, tz)
    return datetime(d.year, d.month, 1, tzinfo=tz).timestamp()


def month_length(now: float, zone: str = "UTC") -> float:
    if zone == "UTC":
        d = datetime.fromtimestamp(now, UTC)
        return calendar.monthrange(d.year, d.month)[1] * 86400.0
    tz = ZoneInfo(zone)
    d = datetime.fromtimestamp(now, tz)
    nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=tz).timestamp()
    return nxt - month_start(now, zone)


@dataclass
class RefServiceReport:
    state: str
    up: int  # 1 up or maintenance, 0 down
    maintenance: int
    availability: dict[str, float]
    burn_rate: dict[str, float]
    sla_availability: float
    sla_target: float
    error_budget_remaining: float
    error_budget_exhaustion_seconds: float
    trending_below_sla: int
    sla_status: int
    outage_seconds: float
    restore_target_seconds: float | None
    outages_total: int
    downtime_seconds_total: float
    supported_availability: float
    kpi_gap: int
    downtime_by_component: dict[str, float]
    # raw seconds, handy in failure messages
    sla_up: float
    sla_down: float
    sla_maintenance: float
    in_service_time: int = 1
    scheduled_maintenance: int = 0


@dataclass
class RefComponentReport:
    state: str
    up: int  # 1 up, 0 down or maintenance
    availability: dict[str, float]
    kpi: float | None


@dataclass
class RefReport:
    services: dict[str, RefServiceReport]
    components: dict[str, RefComponentReport]
    events: dict[str, int]
    unmapped: int


def sla_window(svc: RefService, now: float) -> tuple[float, float]:
    """(start of the SLA period, length used for the trending factor)."""
    if svc.period is None:
        zone = svc.service_time.zone if svc.service_time is not None else "UTC"
        return month_start(now, zone), month_length(now, zone)
    return now - svc.period, svc.period


def service_report(cat: RefCatalog, steps: StepFunctions, name: str, now: float) -> RefServiceReport:
    ev = Evaluator(cat, steps, now)
    svc = cat.services[name]
    budget = 1.0 - svc.target
    avail = {w: service_tally(ev, name, now - s, now).availability for w, s in WINDOWS.items()}
    burn = {w: (1.0 - a) / budget for w, a in avail.items()}
    start, period_len = sla_window(svc, now)
    sla = service_tally(ev, name, start, now, with_blame=True)
    sla_a = sla.availability
    breached = sla_a < svc.target
    trending = (not breached) and any(
        burn[long] > frac * period_len / WINDOWS[long]
        and burn[short] > frac * period_len / WINDOWS[long]
        for long, short, frac in TREND_PAIRS
    )
    remaining_s = budget * (sla.up + sla.down) - sla.down
    if remaining_s <= 0:
        exhaustion = 0.0
    elif avail["1h"] == 1.0:
        exhaustion = math.inf
    else:
        exhaustion = remaining_s / (1.0 - avail["1h"])
    state = ev.service_state(name, now)
    runs = down_runs(ev, name, now)
    current = runs[-1] if runs and runs[-1][1] is None else None
    supported = cat.supported(name)
    return RefServiceReport(
        state=state,
        up=0 if state == DOWN else 1,
        maintenance=1 if state == MAINTENANCE else 0,
        availability=avail,
        burn_rate=burn,
        sla_availability=sla_a,
        sla_target=svc.target,
        error_budget_remaining=1.0 - (1.0 - sla_a) / budget,
        error_budget_exhaustion_seconds=exhaustion,
        trending_below_sla=int(trending),
        sla_status=2 if breached else (1 if trending else 0),
        outage_seconds=0.0 if current is None else now - current[0],
        restore_target_seconds=svc.restore_time,
        outages_total=len(runs),
        downtime_seconds_total=sum(e - s for s, e in runs if e is not None),
        supported_availability=supported,
        kpi_gap=int(supported < svc.target),
        # CONTRACT §4: every component the service reads has a series (0 until blamed),
        # as the §7 report lists it; no other.
        downtime_by_component={**dict.fromkeys(sorted(cat.components_of(name)), 0.0),
                               **sla.blame},
        sla_up=sla.up,
        sla_down=sla.down,
        sla_maintenance=sla.maintenance,
        in_service_time=int(cat.in_service_time(name, now)),
        scheduled_maintenance=int(cat.scheduled_maintenance(name, now)),
    )


def component_report(
    cat: RefCatalog, steps: StepFunctions, comp: str, now: float
) -> RefComponentReport:
    ev = Evaluator(cat, steps, now)
    state = ev.comp_state(comp, now)
    return RefComponentReport(
        state=state,
        up=int(state == UP),
        availability={
            w: component_tally(ev, comp, now - s, now).availability for w, s in WINDOWS.items()
        },
        kpi=cat.kpi.get(comp),
    )


def reference_report(
    catalog: RefCatalog,
    arrivals: Sequence[Ev],
    now: float,
    allowed_lateness: float = 600.0,
    *,
    components: Iterable[str] | None = None,
) -> RefReport:
    """Everything of §3 for `arrivals` (in arrival order), evaluated at `now`."""
    outcomes, applied = classify(catalog, arrivals, allowed_lateness)
    steps = StepFunctions(applied)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    mapped = catalog.mapped_components()
    unmapped = {e.component for e in arrivals if e.component not in mapped}
    comps = sorted(mapped) if components is None else list(components)
    return RefReport(
        services={n: service_report(catalog, steps, n, now) for n in catalog.services},
        components={c: component_report(catalog, steps, c, now) for c in comps},
        events=counts,
        unmapped=len(unmapped),
    )


@dataclass
class RefOutage:
    start: float
    end: float | None
    seconds: float
    planned: bool
    components: tuple[str, ...]  # blamed at some point of an unplanned outage


def outages(
    catalog: RefCatalog, steps: StepFunctions, service: str, now: float
) -> list[RefOutage]:
    """Maximal runs of `down` (unplanned) or `maintenance` (planned) that overlap the
    SLA period, oldest first; `seconds` is the whole run up to now."""
    ev = Evaluator(catalog, steps, now)
    period_start, _ = sla_window(catalog.services[service], now)
    breaks = [b for b in ev.breaks(catalog.components_of(service)) if b <= now]
    out: list[RefOutage] = []
    cur: RefOutage | None = None
    for b in breaks:
        # outside service time nothing counts (§6): as up, it ends a run
        s = ev.service_state(service, b) if catalog.in_service_time(service, b) else UP
        if cur is not None and (s == UP or (s == MAINTENANCE) != cur.planned):
            cur.end = b
            cur.seconds = b - cur.start
            out.append(cur)
            cur = None
        if s != UP and cur is None:
            cur = RefOutage(b, None, 0.0, s == MAINTENANCE, ())
        if cur is not None and s == DOWN:
            cur.components = tuple(sorted(set(cur.components) | ev.blamed(service, b)))
    if cur is not None:
        cur.seconds = now - cur.start
        out.append(cur)
    return [o for o in out if (o.end if o.end is not None else now) > period_start]


# --------------------------------------------------------------------------- period reports


@dataclass
class RefPeriodReport:
    """CONTRACT §7 for one service and one month, by brute force over the whole month."""

    up: float
    down: float
    planned: float
    availability: float
    met: bool
    outages: list[tuple[float, float | None, float, tuple[str, ...]]]  # start, end, in month, blamed
    longest_outage_seconds: float
    restore_breaches: int
    downtime_by_component: dict[str, float]
    supported_availability: float
    kpi_gap: bool


def month_bounds(period: str, zone: str = "UTC") -> tuple[float, float]:
    """[start, end) of calendar month ``YYYY-MM`` in ``zone``."""
    y, m = (int(x) for x in period.split("-"))
    tz = ZoneInfo(zone)
    start = datetime(y, m, 1, tzinfo=tz)
    end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=tz)
    return start.timestamp(), end.timestamp()


def period_report(cat: RefCatalog, steps: StepFunctions, service: str, period: str,
                  now: float) -> RefPeriodReport:
    """The month ``period`` of ``service`` (in its service time's zone, else UTC) as known
    at ``now``: every second of the month evaluated from the whole history, with its
    calendars (§6); the outages as whole runs up to ``now``."""
    ev = Evaluator(cat, steps, now)
    svc = cat.services[service]
    start, end = month_bounds(period, svc.service_time.zone if svc.service_time else "UTC")
    hi = min(end, now)
    # The calendars' changes over the whole month too (the evaluator finds them from
    # the first event or 40 days before now on).
    lo = math.floor((start - 86400.0) / GRID) * GRID
    ev.cal_breaks = sorted(set(ev.cal_breaks) | set(cat.calendar_breaks(lo, end + 86400.0)))
    tally = service_tally(ev, service, start, hi, with_blame=True)
    breaks = ev.breaks(cat.components_of(service))
    outages = []
    for s, e in down_runs(ev, service, now):
        stop = now if e is None else e
        if s < hi and stop > start:
            blamed: set[str] = set()
            for b in [s] + [x for x in breaks if s < x < stop]:
                blamed |= ev.blamed(service, b)
            outages.append((s, e, min(stop, hi) - max(s, start), tuple(sorted(blamed))))
    restore = svc.restore_time
    supported = cat.supported(service)
    by_component = dict.fromkeys(sorted(cat.components_of(service)), 0.0)
    by_component.update(tally.blame)
    return RefPeriodReport(
        up=tally.up,
        down=tally.down,
        planned=tally.maintenance,
        availability=tally.availability,
        met=tally.availability >= svc.target,
        outages=outages,
        longest_outage_seconds=max((o[2] for o in outages), default=0.0),
        restore_breaches=0 if restore is None else sum(
            1 for s, e, _, _ in outages if (now if e is None else e) - s > restore),
        downtime_by_component=by_component,
        supported_availability=supported,
        kpi_gap=supported < svc.target,
    )

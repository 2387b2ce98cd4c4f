"""Hypothesis strategies: small catalogs and event streams on a coarse time grid.

Timestamps sit on a grid (a step of 1 s .. 1 d around a month boundary) so that ties
between events, events exactly at `now`, and events exactly at `now - W` for the
standard windows all happen often.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.reference import DOWN, MAINTENANCE, UP, Ev

#: The engine properties' settings: SLAWATCH_PROPERTY_EXAMPLES examples (150 unless
#: told), reproducible, no deadline (a long stream may take a while).
ENGINE_SETTINGS = settings(
    max_examples=int(os.environ.get("SLAWATCH_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: 2024-03-01T00:00:00Z — a month boundary after a 29-day February.
T0 = datetime(2024, 3, 1, tzinfo=UTC).timestamp()

STEPS = (1.0, 60.0, 300.0, 1800.0, 3600.0, 6 * 3600.0, 86400.0)
PERIODS = ("5m", "1h", "6h", "1d", "3d", "30d", "month", "7d")
TARGETS = (0.5, 0.9, 0.99, 0.999, 0.9995)
KPIS = (None, 0.9, 0.99, 0.995, 0.999)


@dataclass
class Scenario:
    catalog: dict[str, Any]
    events: list[Ev]  # arrival order
    now: float
    step: float


def _requirement(comps: list[str], services: list[str]) -> st.SearchStrategy[Any]:
    leaf: st.SearchStrategy[Any] = st.sampled_from(comps)
    if services:
        leaf = leaf | st.sampled_from(services).map(lambda s: {"service": s})

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        lists = st.lists(children, min_size=1, max_size=3)
        return (
            lists.map(lambda xs: {"any": xs})
            | lists.map(lambda xs: {"all": xs})
            | lists.flatmap(
                lambda xs: st.integers(1, len(xs)).map(lambda k: {"at_least": k, "of": xs})
            )
        )

    return st.recursive(leaf, extend, max_leaves=6)


#: Zones for generated calendars: with DST (north and south, a 30-minute shift) and without.
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe")
#: Instants near which generated scenarios may sit: T0, and nights when clocks change
#: (US spring-forward 2024-03-10, EU 2024-03-31, Lord Howe fall-back 2024-04-07).
CALENDAR_T0S = (T0, datetime(2024, 3, 10, 7, tzinfo=UTC).timestamp(),
                datetime(2024, 3, 31, 1, tzinfo=UTC).timestamp(),
                datetime(2024, 4, 6, 15, tzinfo=UTC).timestamp())
_DAYS = ("Mon-Fri", "Sat,Sun", "Mon,Wed,Fri", "Fri-Mon", "Sun", "Mon-Sun", "Tue")


def _quarter(k: int) -> str:
    return f"{k // 4:02d}:{k % 4 * 15:02d}"


@st.composite
def weekly_ranges(draw: st.DrawFn, max_hours: int = 24) -> str:
    """ "Days HH:MM-HH:MM" on quarter hours: across midnight, to 24:00, or within a day."""
    days = draw(st.sampled_from(_DAYS))
    start = draw(st.integers(0, 95))
    length = draw(st.integers(1, max_hours * 4))
    end = (start + length) % 96
    end_text = "24:00" if end == 0 and draw(st.booleans()) else _quarter(end)
    if end_text == _quarter(start):
        end_text = "24:00" if start == 0 else _quarter((start + 1) % 96)
    return f"{days} {_quarter(start)}-{end_text}"


@st.composite
def calendars(draw: st.DrawFn, catalog: dict[str, Any], t0: float, step: float) -> None:
    """Adds `service_times:` and `maintenance:` (CONTRACT §6) to ``catalog`` in place:
    services with and without service time, weekly windows (in zones with DST, across
    midnight) and one-off ones on the scenario's time grid, overlapping each other."""
    comps = [c for c in catalog["components"] if c != "spare"]
    services = list(catalog["services"])
    times: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 2))):
        spec: dict[str, Any] = {
            "timezone": draw(st.sampled_from(ZONES)),
            "weekly": draw(st.lists(weekly_ranges(), min_size=1, max_size=3)),
        }
        holidays = draw(st.lists(st.integers(-40, 40), max_size=2))
        if holidays:
            spec["except"] = [datetime.fromtimestamp(t0 + k * 86400.0, UTC).date().isoformat()
                              for k in holidays]
        times[f"st{i}"] = spec
    catalog["service_times"] = times
    for name in services:
        if draw(st.booleans()):
            catalog["services"][name]["sla"]["service_time"] = draw(st.sampled_from(sorted(times)))
    windows: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 3))):
        w: dict[str, Any] = {"name": f"w{i}"}
        named_c = draw(st.lists(st.sampled_from(comps), max_size=2, unique=True))
        named_s = draw(st.lists(st.sampled_from(services), max_size=1))
        if not named_c and not named_s:
            named_c = [comps[0]]
        if named_c:
            w["components"] = named_c
        if named_s:
            w["services"] = named_s
        if draw(st.booleans()):
            w["weekly"] = [draw(weekly_ranges(max_hours=6))]
            w["timezone"] = draw(st.sampled_from(ZONES))
        else:
            k = draw(st.integers(-45, 40))
            a = t0 + k * step
            b = a + draw(st.integers(1, 10)) * step
            w["start"] = datetime.fromtimestamp(a, UTC).isoformat().replace("+00:00", "Z")
            w["end"] = datetime.fromtimestamp(b, UTC).isoformat().replace("+00:00", "Z")
        windows.append(w)
    if windows:
        catalog["maintenance"] = windows


@st.composite
def catalogs(draw: st.DrawFn, max_components: int = 6, max_services: int = 4) -> dict[str, Any]:
    n = draw(st.integers(2, max_components))
    comps = [f"c{i}" for i in range(n)]
    components: dict[str, Any] = {}
    for c in comps:
        kpi = draw(st.sampled_from(KPIS))
        components[c] = {"team": "t"} if kpi is None else {"team": "t", "kpi": kpi}
    # sometimes a listed component that no service requires (unmapped)
    if draw(st.booleans()):
        components["spare"] = {"team": "t"}
    m = draw(st.integers(1, max_services))
    services: dict[str, Any] = {}
    for i in range(m):
        earlier = list(services)
        reqs = draw(st.lists(_requirement(comps, earlier), min_size=1, max_size=3))
        services[f"s{i}"] = {
            "kind": draw(st.sampled_from(("internal", "external"))),
            "customers": ["x"],
            "sla": {
                "target": draw(st.sampled_from(TARGETS)),
                "period": draw(st.sampled_from(PERIODS)),
            },
            "restore_time": "30m",
            "requires": reqs,
        }
    return {"components": components, "services": services}


@st.composite
def scenarios(
    draw: st.DrawFn,
    max_events: int = 25,
    allow_future: bool = True,
    allow_unknown: bool = True,
    with_calendars: bool = False,
) -> Scenario:
    """With ``with_calendars``, the catalog has generated service times and maintenance
    windows (CONTRACT §6), and the scenario may sit on a night the clocks change."""
    cat = draw(catalogs())
    comps = list(cat["components"])
    if allow_unknown:
        comps.append("ghost-1")
    step = draw(st.sampled_from(STEPS))
    t0 = draw(st.sampled_from(CALENDAR_T0S)) if with_calendars else T0
    if with_calendars:
        draw(calendars(cat, t0, step))
    span = draw(st.integers(2, 40))
    now_k = draw(st.integers(-span, span))
    now = t0 + now_k * step + draw(st.sampled_from((0.0, 0.0, 0.5, 30.0)))
    max_ts = now + (300.0 if allow_future else 0.0)
    ev = st.builds(
        Ev,
        component=st.sampled_from(comps),
        state=st.sampled_from((UP, DOWN, MAINTENANCE, DOWN)),
        ts=st.integers(-span - 5, span).map(lambda k: t0 + k * step),
    )
    events = [e for e in draw(st.lists(ev, max_size=max_events)) if e.ts <= max_ts]
    return Scenario(cat, events, now, step)


def jittered_order(
    events: list[Ev], jitter: list[float], allowed_lateness: float
) -> list[Ev]:
    """An arrival order where nothing is more than `allowed_lateness` behind the newest
    event of its component: sort by ts + jitter with jitter in [0, allowed_lateness]."""
    keyed = sorted(
        zip(events, jitter, strict=False), key=lambda p: p[0].ts + p[1] * allowed_lateness
    )
    return [e for e, _ in keyed]


# --------------------------------------------------------------------------- engine glue
# Everything that knows the engine's names lives below, so that an API rename touches
# only this block.


def build_engine(catalog: dict[str, Any], allowed_lateness: float = 600.0) -> Any:
    from streams.catalog import parse_catalog
    from streams.engine import Engine

    return Engine(parse_catalog(catalog, "test.yaml"), allowed_lateness=allowed_lateness)


def to_event(e: Ev) -> Any:
    from streams.events import ComponentEvent
    from streams.states import BY_NAME

    return ComponentEvent(e.component, BY_NAME[e.state], e.ts)


def apply_all(engine: Any, events: list[Ev]) -> list[str]:
    return [str(engine.apply(to_event(e))) for e in events]


def state_word(state: Any) -> str:
    return str(state.label)


def close(a: float, b: float) -> bool:
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= max(1e-6, 1e-9 * max(abs(a), abs(b)))


def diff_reports(ref: Any, rep: Any, *, counters: bool = True) -> list[str]:
    """Every difference between a reference report and an engine report, as text."""
    out: list[str] = []

    def num(where: str, want: float, got: float) -> None:
        if not close(float(want), float(got)):
            out.append(f"{where}: reference {want!r}, engine {got!r}")

    for name, r in ref.services.items():
        s = rep.services.get(name)
        if s is None:
            out.append(f"service {name}: missing from the engine report")
            continue
        w = f"service {name}"
        if r.state != state_word(s.state):
            out.append(f"{w} state: reference {r.state}, engine {state_word(s.state)}")
        for win, a in r.availability.items():
            num(f"{w} availability_ratio[{win}]", a, s.availability_ratio[win])
            num(f"{w} burn_rate[{win}]", r.burn_rate[win], s.burn_rate[win])
        num(f"{w} sla_availability_ratio", r.sla_availability, s.sla_availability_ratio)
        num(f"{w} sla_up_seconds", r.sla_up, s.sla_up_seconds)
        num(f"{w} sla_down_seconds", r.sla_down, s.sla_down_seconds)
        num(f"{w} sla_target_ratio", r.sla_target, s.sla_target_ratio)
        num(f"{w} error_budget_remaining_ratio", r.error_budget_remaining,
            s.error_budget_remaining_ratio)
        num(
            f"{w} error_budget_exhaustion_seconds",
            r.error_budget_exhaustion_seconds,
            s.error_budget_exhaustion_seconds,
        )
        num(f"{w} trending_below_sla", r.trending_below_sla, int(s.trending_below_sla))
        num(f"{w} sla_status", r.sla_status, s.sla_status)
        num(f"{w} outage_seconds", r.outage_seconds, s.outage_seconds)
        if r.restore_target_seconds is None or s.restore_target_seconds is None:
            if r.restore_target_seconds != s.restore_target_seconds:
                out.append(f"{w} restore_target_seconds: {r.restore_target_seconds!r} != "
                           f"{s.restore_target_seconds!r}")
        else:
            num(f"{w} restore_target_seconds", r.restore_target_seconds, s.restore_target_seconds)
        if counters:
            num(f"{w} outages_total", r.outages_total, s.outages_total)
            num(f"{w} downtime_seconds_total", r.downtime_seconds_total, s.downtime_seconds_total)
        num(f"{w} in_service_time", r.in_service_time, int(s.in_service_time))
        num(f"{w} scheduled_maintenance", r.scheduled_maintenance, int(s.scheduled_maintenance))
        num(f"{w} sla_maintenance_seconds", r.sla_maintenance, s.sla_planned_seconds)
        num(f"{w} supported_availability_ratio", r.supported_availability,
            s.supported_availability_ratio)
        num(f"{w} kpi_gap", r.kpi_gap, int(s.kpi_gap))
        if set(r.downtime_by_component) != set(s.downtime_by_component_seconds):
            out.append(f"{w} downtime_by_component_seconds: components "
                       f"{sorted(r.downtime_by_component)} != "
                       f"{sorted(s.downtime_by_component_seconds)}")
        for comp in set(r.downtime_by_component) & set(s.downtime_by_component_seconds):
            num(f"{w} downtime_by_component_seconds[{comp}]", r.downtime_by_component[comp],
                s.downtime_by_component_seconds[comp])
    for name, r in ref.components.items():
        c = rep.components.get(name)
        if c is None:
            out.append(f"component {name}: missing from the engine report")
            continue
        if r.state != state_word(c.state):
            out.append(f"component {name} state: reference {r.state}, engine {c.state}")
        for win, a in r.availability.items():
            num(f"component {name} availability_ratio[{win}]", a, c.availability_ratio[win])
    return out


def diff_engine_reports(a: Any, b: Any, *, counters: bool = True) -> list[str]:
    """Differences between two engine reports (exact equality expected)."""
    out: list[str] = []
    for name, x in a.services.items():
        y = b.services[name]
        for f in x.__slots__:
            if not counters and f in ("outages_total", "downtime_seconds_total"):
                continue
            vx, vy = getattr(x, f), getattr(y, f)
            if isinstance(vx, dict):
                keys = set(vx) | set(vy)
                bad = [k for k in keys if not close(vx.get(k, 0.0), vy.get(k, 0.0))]
                if bad:
                    out.append(f"service {name} {f}: {vx} != {vy}")
            elif isinstance(vx, float) and isinstance(vy, float):
                if not close(vx, vy):
                    out.append(f"service {name} {f}: {vx!r} != {vy!r}")
            elif vx != vy:
                out.append(f"service {name} {f}: {vx!r} != {vy!r}")
    for name, x in a.components.items():
        y = b.components[name]
        if x.state != y.state or any(
            not close(x.availability_ratio[w], y.availability_ratio[w]) for w in x.availability_ratio
        ):
            out.append(f"component {name}: {x} != {y}")
    return out


@st.composite
def long_streams(draw: st.DrawFn, with_calendars: bool = False) -> Scenario:
    """Few components, many events (50-300), spaced so that history leaves the
    allowed-lateness horizon and the trackers compact; arrival order jittered within
    the allowed lateness, some duplicates and late events. Built from a drawn seed:
    hypothesis shrinks the seed and the sizes, not the individual events."""
    import random

    cat = draw(catalogs(max_components=3, max_services=2))
    comps = list(cat["components"])
    n = draw(st.integers(50, 300), label="n")
    step = draw(st.sampled_from((1.0, 60.0, 400.0, 700.0, 3600.0)), label="step")
    if with_calendars:
        draw(calendars(cat, T0, step))
    rng = random.Random(draw(st.integers(0, 2**32 - 1), label="seed"))
    start = T0 - n * step / 2
    now = start + n * step
    timed: list[tuple[float, Ev]] = []
    for i in range(n):
        t = start + i * step
        e = Ev(rng.choice(comps), rng.choice((UP, UP, DOWN, DOWN, MAINTENANCE)), t)
        delay = rng.uniform(0, 600.0) if rng.random() < 0.3 else 0.0
        if rng.random() < 0.03:
            delay = 600.0 + step * rng.randint(1, 3)  # late (mostly)
        timed.append((t + delay, e))
        if rng.random() < 0.05:
            timed.append((t + delay + rng.uniform(0, 600.0), e))  # redelivery
    timed.sort(key=lambda p: p[0])
    return Scenario(cat, [e for _, e in timed], now, step)

"""`slawatch simulate`: realistic component failures for a catalog, as events.

Each component is an alternating renewal process: up for an exponential time (mean
time between failures), then down for an exponential time (mean time to repair), with
occasional planned maintenance windows. One chosen service gets a flapping component
(a single point of failure that drops for a few seconds every few minutes), so its
short burn-rate windows light up while its SLA is not breached yet: the "trending
below SLA" state an operator should act on.

Events carry real wall-clock timestamps, because the worker's windows end at the wall
clock. To make the metrics look alive at once, the simulator first publishes a past:
the same processes run from ``now - backfill`` to now, in time order, and then it goes
live. Heartbeats (the current state of each component, repeated) give a steady load.

With the same ``--seed`` the schedule (offsets from the start, components, states) is
the same; only the wall-clock origin moves.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from agents.clients.publish import Publisher
    from streams.catalog import Catalog

log = logging.getLogger(__name__)

UP, DOWN, MAINTENANCE = "up", "down", "maintenance"
SOURCE = "slawatch-sim"

#: Ids no catalog lists: monitoring tools report things nobody mapped to a service
#: (the ITIL texts' "unrecognized services"); the worker counts them as unmapped.
DEFAULT_UNKNOWN = ("printer-2f", "lab-vm-17")


class SimEvent(NamedTuple):
    ts: float
    component: str
    state: str


@dataclass(frozen=True)
class SimulationConfig:
    """Rates are compressed against reality so that a demo shows failures within minutes."""

    seed: int = 1
    #: Mean time between failures of a component with kpi 0.99; components with a
    #: better kpi fail less often (by sqrt((1 - 0.99) / (1 - kpi))).
    mtbf: float = 6 * 3600.0
    mttr: float = 180.0
    maintenance_every: float = 24 * 3600.0
    maintenance_duration: float = 20 * 60.0
    #: "auto" picks an external service with a single point of failure; None: no flapping.
    trending: str | None = "auto"
    flap_component: str | None = None
    flap_period: float = 240.0
    flap_down: float = 12.0
    #: The flapping began this long before the simulation's "now" (within the backfill).
    flap_since: float = 90 * 60.0
    backfill: float = 6 * 3600.0
    heartbeat_rate: float = 50.0
    unknown_components: tuple[str, ...] = DEFAULT_UNKNOWN
    #: Seconds after going live at which a redundant component of an external service
    #: fails (for ``opening_incident_duration`` s): something visibly happens in the
    #: first minute, and the service stays up thanks to its redundancy. None: off.
    opening_incident: float | None = 20.0
    opening_incident_duration: float = 120.0


def _kpi_factor(kpi: float | None) -> float:
    if kpi is None or kpi >= 1.0:
        return 1.0
    return math.sqrt(0.01 / max(1.0 - kpi, 1e-6))


class _Process:
    """One component's up/down/maintenance renewal process with its own RNG.

    ``forced`` = (down_at, up_at) scripts one outage (the demo's opening incident); it
    is taken at the first up period it falls in, and dropped if the component is not up
    then. The RNG draws do not depend on it, so the rest of the schedule is unchanged.
    """

    def __init__(self, component: str, rng: random.Random, mtbf: float, mttr: float,
                 maintenance_every: float, maintenance_duration: float, start: float,
                 forced: tuple[float, float] | None = None) -> None:
        self.component = component
        self.rng = rng
        self.mtbf = mtbf
        self.mttr = mttr
        self.maintenance_every = maintenance_every
        self.maintenance_duration = maintenance_duration
        self._forced = forced
        self._forced_up: float | None = None
        self.state = UP
        self.next_ts, self.next_state = self._plan(start)

    def _plan(self, now: float) -> tuple[float, str]:
        rng = self.rng
        if self.state == UP:
            fail = rng.expovariate(1.0 / self.mtbf)
            maint = rng.expovariate(1.0 / self.maintenance_every) if self.maintenance_every > 0 else math.inf
            planned = (now + fail, DOWN) if fail <= maint else (now + maint, MAINTENANCE)
            if self._forced is not None:
                down_at, up_at = self._forced
                if down_at < now:
                    self._forced = None  # it fell into a down or maintenance period
                elif down_at <= planned[0]:
                    self._forced, self._forced_up = None, up_at
                    return down_at, DOWN
            return planned
        if self.state == DOWN:
            repair = now + max(5.0, rng.expovariate(1.0 / self.mttr))
            if self._forced_up is not None:
                repair, self._forced_up = max(self._forced_up, now + 1.0), None
            return repair, UP
        return now + self.maintenance_duration * rng.uniform(0.5, 1.5), UP

    def step(self) -> SimEvent:
        ts, self.state = self.next_ts, self.next_state
        self.next_ts, self.next_state = self._plan(ts)
        return SimEvent(ts, self.component, self.state)


class _Flapper(_Process):
    """Up until ``flap_start``, then down for ~flap_down every ~flap_period seconds."""

    def __init__(self, component: str, rng: random.Random, period: float, down: float,
                 flap_start: float) -> None:
        self.period = period
        self.down = down
        self.component = component
        self.rng = rng
        self.state = UP
        self.next_ts, self.next_state = flap_start + rng.uniform(0, period), DOWN

    def _plan(self, now: float) -> tuple[float, str]:
        if self.state == DOWN:
            return now + self.down * self.rng.uniform(0.5, 1.5), UP
        return now + self.period * self.rng.uniform(0.6, 1.4), DOWN


def single_points_of_failure(catalog: Catalog, service: str) -> list[str]:
    """Components whose failure alone takes the service down."""
    from streams.states import State

    model = catalog.models[service]
    comps = sorted(catalog.components_of(service))
    base = dict.fromkeys(comps, State.UP)
    out = []
    for c in comps:
        states = dict(base)
        states[c] = State.DOWN
        if model.state(states) == State.DOWN:
            out.append(c)
    return out


def choose_flapper(catalog: Catalog, trending: str | None,
                   component: str | None = None) -> tuple[str | None, str | None]:
    """(service, component) to make trend below its SLA, or (None, None).

    "auto" prefers an external service and, among its single points of failure, the
    one that takes down the fewest other services (so exactly one service trends),
    then the weakest kpi: a flaky leased line rather than the core switch.
    """
    if trending is None or trending == "none":
        return None, None
    if trending != "auto" and trending not in catalog.services:
        raise ValueError(f"--trending {trending!r}: no such service in {catalog.source}")
    if component is not None and component not in catalog.components:
        raise ValueError(f"--flap-component {component!r}: not in {catalog.source}")
    candidates = sorted(catalog.services) if trending == "auto" else [trending]
    spofs = {s: single_points_of_failure(catalog, s) for s in catalog.services}

    def hurt(c: str) -> int:
        return sum(1 for s in catalog.services_for(c) if c in spofs[s])

    best: tuple[tuple[int, bool, float, str, str], str, str] | None = None
    for service in candidates:
        options = spofs[service] if component is None else [component]
        if component is not None and component not in spofs[service] and trending == "auto":
            continue
        for c in options:
            kpi = catalog.components[c].kpi
            key = (hurt(c), catalog.services[service].kind != "external",
                   1.0 if kpi is None else kpi, service, c)
            if best is None or key < best[0]:
                best = (key, service, c)
    if best is None:
        if trending != "auto":
            raise ValueError(f"--trending {trending}: no single component can take it down; "
                             "name one with --flap-component")
        return None, None
    return best[1], best[2]


def choose_opening(catalog: Catalog, exclude: str | None = None) -> str | None:
    """A redundant component of an external service (a single point of failure of none),
    the weakest first: one of the two 99% mail servers in the example catalog."""
    spof = {c for s in catalog.services for c in single_points_of_failure(catalog, s)}
    best: tuple[bool, float, str] | None = None
    for c in sorted(catalog.components):
        services = catalog.services_for(c)
        if not services or c in spof or c == exclude:
            continue
        external = any(catalog.services[s].kind == "external" for s in services)
        kpi = catalog.components[c].kpi
        key = (not external, 1.0 if kpi is None else kpi, c)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


class Simulator:
    """Deterministic event schedule for a catalog, starting at wall-clock ``start``."""

    def __init__(self, catalog: Catalog, config: SimulationConfig, start: float) -> None:
        self.catalog = catalog
        self.config = config
        self.start = start
        self.trending_service, self.flap_component = choose_flapper(
            catalog, config.trending, config.flap_component
        )
        self._procs: list[_Process] = []
        self.components = sorted(catalog.components)
        flap_start = max(start, start + config.backfill - config.flap_since)
        self.opening_component = None if config.opening_incident is None else choose_opening(
            catalog, exclude=self.flap_component
        )
        live = start + config.backfill
        for comp in self.components:
            rng = random.Random(f"{config.seed}:{comp}")
            if comp == self.flap_component:
                self._procs.append(_Flapper(comp, rng, config.flap_period, config.flap_down, flap_start))
            else:
                forced = None
                if comp == self.opening_component and config.opening_incident is not None:
                    down_at = live + config.opening_incident
                    forced = (down_at, down_at + config.opening_incident_duration)
                factor = _kpi_factor(catalog.components[comp].kpi)
                self._procs.append(_Process(comp, rng, config.mtbf * factor, config.mttr,
                                            config.maintenance_every, config.maintenance_duration, start,
                                            forced))
        for comp in config.unknown_components:
            rng = random.Random(f"{config.seed}:{comp}")
            self._procs.append(_Process(comp, rng, 30 * 60.0, 300.0, 0.0, 0.0, start))
        self._heap = [(p.next_ts, i) for i, p in enumerate(self._procs)]
        heapq.heapify(self._heap)
        self.states: dict[str, str] = {p.component: UP for p in self._procs}

    def initial_events(self) -> list[SimEvent]:
        """Every component reported up at the start: the worker learns the whole fleet."""
        return [SimEvent(self.start, p.component, UP) for p in self._procs]

    def events_until(self, t: float) -> Iterator[SimEvent]:
        """State changes with ``ts <= t``, in ts order; continues where the last call ended."""
        heap = self._heap
        procs = self._procs
        while heap and heap[0][0] <= t:
            _, i = heap[0]
            ev = procs[i].step()
            heapq.heapreplace(heap, (procs[i].next_ts, i))
            self.states[ev.component] = ev.state
            yield ev

    def next_change(self) -> float:
        return self._heap[0][0] if self._heap else math.inf


def encode(ev: SimEvent, seq: int) -> bytes:
    import orjson

    return orjson.dumps({"component": ev.component, "state": ev.state, "ts": round(ev.ts, 3),
                         "source": SOURCE, "id": f"sim-{seq}"})


@dataclass
class Progress:
    backfilled: int = 0
    changes: int = 0
    heartbeats: int = 0
    live: bool = False
    started: float = field(default_factory=time.time)

    @property
    def total(self) -> int:
        return self.backfilled + self.changes + self.heartbeats


Sink = Callable[[bytes, bytes], None]


def run_simulation(
    sim: Simulator,
    sink: Sink,
    *,
    stop: threading.Event | None = None,
    duration: float | None = None,
    heartbeat_rate: float | None = None,
    progress: Progress | None = None,
    on_live: Callable[[Progress], None] | None = None,
    flush: Callable[[], None] | None = None,
) -> Progress:
    """Backfill from ``sim.start`` to now, then publish live until stopped.

    ``sink(key, value)`` sends one message (``Publisher.send``, or a printer).
    """
    stop = stop or threading.Event()
    progress = progress or Progress()
    rate = sim.config.heartbeat_rate if heartbeat_rate is None else heartbeat_rate
    seq = 0
    for ev in sim.initial_events():
        seq += 1
        sink(ev.component.encode(), encode(ev, seq))
        progress.backfilled += 1
    now = time.time()
    for ev in sim.events_until(now):
        seq += 1
        sink(ev.component.encode(), encode(ev, seq))
        progress.backfilled += 1
    if flush is not None:
        flush()
    progress.live = True
    if on_live is not None:
        on_live(progress)
    live_start = time.time()
    end = math.inf if duration is None else live_start + duration
    catalog_components = list(sim.components)
    hb_index = 0
    while not stop.is_set():
        now = time.time()
        if now >= end:
            break
        for ev in sim.events_until(now):
            seq += 1
            sink(ev.component.encode(), encode(ev, seq))
            progress.changes += 1
        if rate > 0 and catalog_components:
            due = int((now - live_start) * rate) - progress.heartbeats
            for _ in range(max(0, due)):
                comp = catalog_components[hb_index % len(catalog_components)]
                hb_index += 1
                seq += 1
                sink(comp.encode(), encode(SimEvent(now, comp, sim.states[comp]), seq))
                progress.heartbeats += 1
        wait = min(sim.next_change(), end) - time.time()
        if rate > 0:
            wait = min(wait, max(0.01, 1.0 / rate), 0.1)
        stop.wait(max(0.001, min(wait, 0.5)))
    if flush is not None:
        flush()
    return progress


# -- the subcommand --------------------------------------------------------------------------


def _duration(text: str) -> float:
    from streams.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    """Simulation flags (shared with `demo`)."""
    d = SimulationConfig()
    g = parser.add_argument_group("simulation")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    g.add_argument("--backfill", type=_duration, default="6h",
                   help="publish this much plausible past first, so metrics look alive at once "
                        "(default %(default)s)")
    g.add_argument("--mtbf", type=_duration, default="6h",
                   help="mean time between failures of a kpi-0.99 component; better kpis fail "
                        "less often (default %(default)s)")
    g.add_argument("--mttr", type=_duration, default="3m", help="mean time to repair (default %(default)s)")
    g.add_argument("--maintenance-every", type=_duration, default="24h",
                   help="mean time between planned maintenance windows per component (default %(default)s)")
    g.add_argument("--maintenance-duration", type=_duration, default="20m",
                   help="mean maintenance window (default %(default)s)")
    g.add_argument("--trending", default="auto",
                   help="service to trend below its SLA through a flapping component: a service "
                        "name, 'auto' or 'none' (default %(default)s)")
    g.add_argument("--flap-component", default=None, help="the component that flaps (default: chosen)")
    g.add_argument("--flap-period", type=_duration, default="4m", help="default %(default)s")
    g.add_argument("--flap-down", type=_duration, default="12s", help="default %(default)s")
    g.add_argument("--no-opening-incident", action="store_true",
                   help="do not fail a redundant component 20 s after going live")
    g.add_argument("--heartbeat-rate", type=float, default=d.heartbeat_rate,
                   help="heartbeats (current state, repeated) per second, for a steady load "
                        "(default %(default)s)")


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    def seconds(v: object) -> float:
        return v if isinstance(v, float) else _duration(str(v))

    return SimulationConfig(
        seed=args.seed,
        mtbf=seconds(args.mtbf),
        mttr=seconds(args.mttr),
        maintenance_every=seconds(args.maintenance_every),
        maintenance_duration=seconds(args.maintenance_duration),
        trending=None if args.trending == "none" else args.trending,
        flap_component=args.flap_component,
        flap_period=seconds(args.flap_period),
        flap_down=seconds(args.flap_down),
        backfill=seconds(args.backfill),
        heartbeat_rate=args.heartbeat_rate,
        opening_incident=None if args.no_opening_incident else SimulationConfig.opening_incident,
    )


def default_catalog() -> str:
    """$SLAWATCH_CATALOG, else config/services.yaml here, else the example next to the code.

    The last one lets `slawatch demo` work from any directory of a source checkout.
    """
    env = os.environ.get("SLAWATCH_CATALOG")
    if env:
        return env
    here = "config/services.yaml"
    if os.path.exists(here):
        return here
    bundled = os.path.join(os.path.dirname(__file__), "..", "..", "config", "services.yaml")
    return os.path.normpath(bundled) if os.path.exists(bundled) else here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from agents.clients.publish import add_connection_arguments

    parser.description = (
        "Publish realistic failures for a catalog: per-component random failures (MTBF/MTTR), "
        "maintenance windows, one service trending below its SLA; a backfilled past first, "
        "then live events and heartbeats with wall-clock timestamps."
    )
    parser.add_argument("--catalog", default=default_catalog(),
                        help="service catalog (env SLAWATCH_CATALOG, default %(default)s)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds to run live before stopping (default: until Ctrl-C)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print JSON lines to stdout instead of publishing (pipe into "
                             "`slawatch publish`)")
    add_simulation_arguments(parser)
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from agents.clients.publish import PublishError, connect
    from streams.catalog import CatalogError, load_catalog

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    err = sys.stderr
    try:
        catalog = load_catalog(args.catalog)
        config = config_from_args(args)
        sim = Simulator(catalog, config, time.time() - config.backfill)
    except (CatalogError, ValueError) as exc:
        print(f"slawatch simulate: {exc}", file=err)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    publisher: Publisher | None = None
    if args.dry_run:
        out = sys.stdout.buffer

        def sink(key: bytes, value: bytes) -> None:
            out.write(value + b"\n")

        flush: Callable[[], None] = out.flush
    else:
        try:
            publisher = connect(args, client_id="slawatch-simulate")
        except PublishError as exc:
            print(f"slawatch simulate: {exc}", file=err)
            return 2
        sink = publisher.send
        flush = publisher.flush
    if sim.trending_service:
        print(f"simulating {len(sim.components)} components of {args.catalog}; "
              f"{sim.trending_service} will trend below its SLA ({sim.flap_component} flaps)", file=err)
    if sim.opening_component:
        print(f"{sim.opening_component} will fail {config.opening_incident:g} s after going live",
              file=err)

    def on_live(p: Progress) -> None:
        print(f"backfilled {p.backfilled} events ({config.backfill / 3600:g} h); live now", file=err)

    try:
        progress = run_simulation(sim, sink, stop=stop, duration=args.duration, flush=flush,
                                  on_live=on_live)
    except BrokenPipeError:
        return 0
    finally:
        if publisher is not None:
            with contextlib.suppress(Exception):
                publisher.close()
    failed = publisher.failed if publisher is not None else 0
    print(f"sent {progress.total} events ({progress.backfilled} backfilled, {progress.changes} "
          f"state changes, {progress.heartbeats} heartbeats), {failed} failed", file=err)
    return 1 if failed else 0

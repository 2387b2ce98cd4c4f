"""The collector reuses a component's /metrics lines only while they are exact.

``ComponentLines`` keeps each component's lines with the tracker's stored bytes and the
interval in which ``component_lines_until`` proved every value constant. Whatever the
clock and the trackers do, a scrape must read exactly what a fresh report renders:
``render_report(rt.report(now))``. The clock is injected; nothing sleeps. Run on the C
loops (``_native.windows_many``/``put_texts``) and on their Python twins.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from agents.exposition.collector import SlawatchCollector, render_chunks, render_report
from agents.settings import WorkerSettings
from agents.worker.state import encode_component
from streams.catalog import Catalog, parse_catalog
from streams.component import ComponentTracker
from streams.events import ComponentEvent
from streams.report import component_lines_until, component_report
from streams.service import ServiceTracker
from streams.states import State
from tests.fake_tables import FakeRuntime, Table

pytestmark = pytest.mark.usefixtures("engine_path")

T0 = 1_700_000_000.0
DAY = 86400.0


def catalog(n: int, team: str = "t") -> Catalog:
    comps = {f"c{i}": {"team": team, "kpi": 0.99} for i in range(n)}
    comps["lonely"] = {"team": team}  # in no service, never heard of
    periods = ["30d", "month", "1d", "1h"]  # a 1h period is shorter than some windows
    services = {f"s{i}": {"kind": "internal", "customers": ["x"],
                          "sla": {"target": 0.99, "period": periods[i % len(periods)]},
                          "restore_time": "30m" if i % 2 else None,
                          "requires": [f"c{i}", f"c{(i + 1) % n}"]} for i in range(n)}
    for s in services.values():
        if s["restore_time"] is None:
            del s["restore_time"]
    return parse_catalog(orjson.loads(orjson.dumps({"components": comps, "services": services})),
                         "test")


async def _send(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


class Harness:
    def __init__(self, n: int) -> None:
        self.rt = FakeRuntime(WorkerSettings(), catalog(n))
        self.rt.bind_tables(Table(), Table())
        self.now = T0
        self.collector = SlawatchCollector(self.rt, clock=lambda: self.now)

    def apply(self, comp: str, state: State, ts: float, *, flush: bool = True) -> None:
        """Both stages: the component's tracker, then its services' trackers."""
        table = self.rt.components
        tracker = table.get(comp)
        if tracker is None:
            tracker = ComponentTracker(comp)
            table.put(comp, tracker, 0)
        outcome, segment = tracker.apply(ComponentEvent(comp, state, ts, None, None), 600.0)
        if outcome == "accepted":
            table.touch(comp, 0)
        catalog = self.rt.catalog
        if segment is not None:
            for name in catalog.services_for(comp):
                svc = self.rt.services.get(name)
                if svc is None:
                    svc = ServiceTracker(name)
                    self.rt.services.put(name, svc, 0)
                svc.apply(segment, catalog.models[name])
                self.rt.services.touch(name, 0)
        if flush:
            self.flush()

    def flush(self) -> None:
        asyncio.run(self.rt.components.flush(_send))
        asyncio.run(self.rt.services.flush(_send))

    def check(self) -> None:
        got = self.collector.report_text()
        assert got == render_report(self.rt.report(self.now))


def test_reused_lines_equal_fresh_ones_as_time_passes() -> None:
    h = Harness(6)
    h.apply("c0", State.DOWN, T0 - 700)
    h.apply("c0", State.UP, T0 - 400)  # down for 5 minutes, 400 s ago
    h.apply("c1", State.DOWN, T0 - 2 * DAY)  # down throughout the short windows
    h.apply("c2", State.MAINTENANCE, T0 - 100)
    h.apply("c3", State.UP, T0 - 50)  # up, heard of
    h.apply("c4", State.DOWN, T0 + 120)  # a point in the future
    h.check()
    steps = [0, 1, 1, 118, 1, 1, 299, 1, 1400, 1800, 3600, 5 * 3600, DAY, 2 * DAY, 30 * DAY,
             0.5, 1e-3]
    for dt in steps:
        h.now += dt
        h.check()
    assert h.collector.component_lines.reused > 0
    h.now -= 40 * DAY  # a clock that goes back is answered afresh
    h.check()


def test_services_reused_across_a_month_boundary() -> None:
    h = Harness(8)
    h.now = 1_701_388_800.0 - 100  # 2023-12-01T00:00:00Z - 100 s
    h.apply("c0", State.UP, h.now - 10)
    h.check()
    h.check()
    assert h.collector.service_lines.reused >= 4
    for dt in (50, 49, 0.5, 0.5, 1, 1, 3600):
        h.now += dt
        h.check()
    h.apply("c3", State.DOWN, h.now - 1)
    h.check()
    h.now += 10
    h.check()


def test_tracker_changes_are_seen() -> None:
    h = Harness(4)
    h.apply("c0", State.UP, T0 - 60)
    h.check()
    h.check()
    reused = h.collector.component_lines.reused
    assert reused >= 4  # c0..c3 and lonely: up throughout every window
    h.now += 10
    h.apply("c0", State.DOWN, h.now - 5, flush=False)  # changed, not yet written
    h.check()
    h.now += 10
    h.check()
    h.flush()
    h.check()
    h.now += 10
    h.apply("c0", State.UP, h.now - 1)
    h.check()
    h.now += 10
    # A value written underneath (recovery, a standby's changelog): new bytes.
    other = ComponentTracker("c1")
    other.apply(ComponentEvent("c1", State.DOWN, h.now - 30, None, None), 600.0)
    h.rt.components.table.data["c1"] = encode_component(other)
    h.check()
    h.now += 1
    h.check()
    del h.rt.components.table.data["c1"]  # gone: up all along again
    h.check()


def test_table_versions_move_with_writes_and_rebalances() -> None:
    h = Harness(3)
    table = h.rt.components
    v0 = table.versions()
    h.apply("c0", State.UP, T0 - 60, flush=False)
    assert table.versions() == v0  # not written yet: the collector sees it dirty
    h.flush()
    v1 = table.versions()
    assert v1 != v0
    h.flush()  # nothing dirty, nothing written
    assert table.versions() == v1
    table.forget()
    assert table.versions() != v1


def test_value_replaced_underneath_in_a_rebalance_is_seen() -> None:
    """Recovery writes the store without ``flush``; it follows a rebalance, which
    begins with ``forget`` (partitions revoked): the bytes are looked at again."""
    h = Harness(4)
    h.apply("c1", State.DOWN, T0 - 40 * DAY)  # constant: down throughout every window
    h.apply("c2", State.DOWN, T0 - 100)  # moving
    h.check()
    h.check()
    assert h.collector.component_lines.reused >= 4
    h.now += 1
    for comp, back in (("c1", 30.0), ("c2", 200.0)):  # the same keys: same store size
        other = ComponentTracker(comp)
        other.apply(ComponentEvent(comp, State.UP, h.now - 40 * DAY, None, None), 600.0)
        other.apply(ComponentEvent(comp, State.DOWN, h.now - back, None, None), 600.0)
        h.rt.components.table.data[comp] = encode_component(other)
    h.rt.components.forget()
    h.rt.services.forget()
    h.check()
    h.now += 1
    h.check()


def test_catalog_reload_relabels() -> None:
    h = Harness(3)
    h.apply("c0", State.UP, T0 - 60)
    h.check()
    h.check()
    h.rt.set_catalog(catalog(3, team="new team"))
    h.check()
    assert 'team="new team"' in h.collector.report_text()
    h.rt.set_catalog(catalog(2))  # c2 gone
    h.check()


def test_randomised_against_fresh_reports() -> None:
    rng = random.Random(4)
    h = Harness(12)
    for _ in range(60):
        for _ in range(rng.randrange(4)):
            comp = f"c{rng.randrange(12)}"
            state = rng.choice([State.UP, State.UP, State.DOWN, State.MAINTENANCE])
            ts = h.now - rng.choice([0.0, 1.0, 30.0, 299.0, 300.0, 301.0, 500.0]) + rng.choice(
                [0.0, 0.0, 100.0])
            h.apply(comp, state, ts, flush=rng.random() < 0.8)
        if rng.random() < 0.3:
            h.flush()
        h.now += rng.choice([0.0, 0.25, 1.0, 60.0, 299.0, 300.0, 301.0, 3600.0, 6 * 3600.0,
                             DAY, 7 * DAY])
        h.check()
    assert h.collector.component_lines.reused > 0


@pytest.mark.parametrize("seed", range(6))
def test_prepared_lines_equal_fresh_ones(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare`` (what the worker does once ready) run in steps interleaved with
    events, writes, the clock and scrapes: every scrape is a fresh report's text."""
    from agents.exposition import collector as mod

    monkeypatch.setattr(mod, "JOIN_KEYS", 3)  # several chunks, several steps each
    rng = random.Random(seed)
    h = Harness(14)
    steps = None
    for _ in range(80):
        r = rng.random()
        if r < 0.4:
            comp = f"c{rng.randrange(14)}"
            state = rng.choice([State.UP, State.UP, State.DOWN, State.MAINTENANCE])
            ts = h.now - rng.choice([0.0, 1.0, 30.0, 299.0, 300.0, 3000.0, 2 * DAY])
            h.apply(comp, state, ts, flush=rng.random() < 0.7)
        elif r < 0.5:
            h.flush()
        elif r < 0.6:
            h.now += rng.choice([0.0, 0.5, 60.0, 300.0, 3600.0, DAY, 8 * DAY])
        elif r < 0.7 and rng.random() < 0.3:
            # a restart: a new runtime over the same stored bytes, nothing decoded
            h.flush()
            old = h.rt
            h.rt = FakeRuntime(WorkerSettings(), old.catalog)
            h.rt.bind_tables(old.components.table, old.services.table)
            h.collector = SlawatchCollector(h.rt, clock=lambda: h.now)
            steps = None
        if steps is None and rng.random() < 0.3:
            # the first pass once ready, or a refresh of what changed since
            c = h.collector
            aheads: list[Callable[..., Iterator[None]]] = [
                c.prepare, c.refresh, lambda step, c=c: c.prepare_catalog()]
            ahead = rng.choice(aheads)
            steps = ahead(step=rng.choice([1, 2, 5, 100]))
        if steps is not None:
            for _ in range(rng.randrange(4)):
                if next(steps, StopIteration) is StopIteration:
                    steps = None
                    break
        if rng.random() < 0.4:
            h.check()
    h.check()


def test_prepare_catalog_reads_no_tracker_and_spares_the_scrape_its_labels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the worker does once ready even while a backlog holds the rest: no tracker
    is read (events do not change it), and the scrape after it builds no chunk."""
    from agents.exposition import collector as mod

    monkeypatch.setattr(mod, "JOIN_KEYS", 3)
    h = Harness(10)
    for i in range(10):
        h.apply(f"c{i}", State.DOWN, h.now - 100.0 * i)

    def no_read(*args: Any) -> Any:
        raise AssertionError("prepare_catalog read a tracker")

    lines = h.collector.component_lines
    with monkeypatch.context() as m:
        for table in (h.rt.components, h.rt.services):
            for name in ("get", "get_stored", "get_stored_many", "stored_lookup"):
                m.setattr(table, name, no_read)
        steps = sum(1 for _ in h.collector.prepare_catalog())
    assert steps > 4  # in slices
    chunks = lines._chunks
    assert len(chunks) == 4
    built = []
    monkeypatch.setattr(lines, "_build_steps",
                        lambda *a: built.append(a) or iter(()))  # type: ignore[func-returns-value]
    h.check()
    assert built == [] and lines._chunks is chunks
    h.apply("c3", State.UP, h.now - 5.0)
    h.check()


def test_prepare_catalog_before_ready_makes_what_the_catalog_alone_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """While the worker joins its group (not ready, no partitions owned), the catalog's
    constants (those a service report and the day rollups read) and the services'
    label texts are made; nothing that depends on the partitions owned. Once ready,
    the rest is made and the scrape reads what was made then."""
    h = Harness(6)
    cat = h.rt.catalog
    monkeypatch.setattr(h.rt, "ready", lambda: False)

    def no_owned(*args: Any) -> Any:
        raise AssertionError("asked which partitions are owned before ready")

    monkeypatch.setattr(h.rt, "owned_sorted", no_owned)
    for _ in h.collector.prepare_catalog():
        pass
    for name in ("_supported", "_calendars", "_components_of", "component_windows"):
        assert name in cat.__dict__, name  # built (cached properties)
    labs = h.collector.service_lines.labels(cat)
    assert labs and h.collector.service_lines._escape_catalog is cat
    assert h.collector.component_lines._catalog is None  # the owned keys' chunks: later
    monkeypatch.undo()
    for _ in h.collector.prepare_catalog():
        pass
    assert h.collector.component_lines._catalog is cat
    assert h.collector.service_lines.labels(cat) is labs
    h.check()


def test_prepare_then_scrape_reuses_everything_constant() -> None:
    h = Harness(20)
    for i in range(20):
        h.apply(f"c{i}", State.UP, T0 - 100 - i)
    h.apply("c3", State.DOWN, T0 - 2 * DAY)
    old = h.rt
    h.rt = FakeRuntime(WorkerSettings(), old.catalog)  # restarted: bytes only
    h.rt.bind_tables(old.components.table, old.services.table)
    h.collector = SlawatchCollector(h.rt, clock=lambda: h.now)
    assert not h.rt.components._cache
    for _ in h.collector.prepare(step=4):
        pass
    assert len(h.rt.components._cache) == 20  # decoded ahead
    h.now += 1.0
    h.check()
    keys = len(h.rt.owned_sorted("components"))
    assert h.collector.component_lines.reused == keys  # all proved constant ahead
    assert h.collector.service_lines.reused > 0


class Spies:
    """Which component keys ``ComponentLines`` looks at again and which services
    ``ServiceLines`` computes afresh (a component looked at, a service computed, is
    work a scrape would otherwise do)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from agents.exposition import collector as mod

        self.looked: list[str] = []
        self.fresh: list[str] = []
        self.warmed: list[str] = []  # services whose values move, looked at ahead
        real_look, real_fresh = mod.ComponentLines._look, mod.ServiceLines.fresh_many
        real_warm = mod.ServiceLines.warm

        def look(lines: Any, ch: Any, look: list[int], *args: Any) -> None:
            self.looked += [ch.keys[i] for i in look]
            real_look(lines, ch, look, *args)

        def fresh_many(lines: Any, catalog: Catalog, items: list[tuple[str, Any]],
                       *args: Any) -> Any:
            self.fresh += [key for key, _ in items]
            return real_fresh(lines, catalog, items, *args)

        def warm(lines: Any, catalog: Catalog, key: str, *args: Any) -> None:
            self.warmed.append(key)
            real_warm(lines, catalog, key, *args)

        monkeypatch.setattr(mod.ComponentLines, "_look", look)
        monkeypatch.setattr(mod.ServiceLines, "fresh_many", fresh_many)
        monkeypatch.setattr(mod.ServiceLines, "warm", warm)

    def clear(self) -> None:
        self.looked.clear()
        self.fresh.clear()
        self.warmed.clear()


def backlog_after_ready(h: Harness, rng: random.Random) -> tuple[set[str], set[str]]:
    """Some history, the collector prepared, then a backlog (written in batches of a
    few components) with events for every component: new trackers, and down/up blips
    that move the values of some. Returns the components blipped and those whose
    stored bytes changed, and the services whose did (an up after an up changes
    none)."""
    comps = [f"c{i}" for i in range(len(h.rt.catalog.components) - 1)]
    for c in rng.sample(comps, len(comps) // 3):
        h.apply(c, State.UP, T0 - rng.choice([40 * DAY, 2 * DAY, 3600.0]))
    for _ in h.collector.prepare(step=rng.choice([1, 3, 64])):
        pass
    h.check()
    h.now += rng.choice([1.0, 60.0])
    before = {c: h.rt.components.table.data.get(c) for c in comps}
    services = h.rt.owned_sorted("services")
    before_s = {s: h.rt.services.table.data.get(s) for s in services}
    blipped = set(rng.sample(comps, rng.randrange(len(comps) // 2)))
    for c in comps:
        if c in blipped:
            at = h.now - rng.choice([30.0, 2 * 3600.0, 2 * DAY])
            h.apply(c, State.DOWN, at, flush=False)
            h.apply(c, State.UP, at + rng.choice([1.0, 20.0]), flush=False)
        else:
            h.apply(c, State.UP, h.now - rng.choice([5.0, 100.0]), flush=False)
        if rng.random() < 0.3:
            h.flush()
    h.flush()
    changed = {c for c in comps if h.rt.components.table.data.get(c) != before[c]}
    changed |= {s for s in services if h.rt.services.table.data.get(s) != before_s[s]}
    assert len(changed) > len(comps) // 2
    return blipped, changed


@pytest.mark.parametrize("seed", range(6))
def test_refresh_after_a_backlog_leaves_the_scrape_nothing_to_redo(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a backlog that changed every tracker since the prepare, ``refresh``
    looks again at what changed, so the first scrape after it looks at no component
    again, computes afresh only the services whose values move, and is a fresh
    report's text."""
    from agents.exposition import collector as mod

    monkeypatch.setattr(mod, "JOIN_KEYS", 4)
    rng = random.Random(seed)
    h = Harness(rng.randrange(6, 30))
    blipped, changed = backlog_after_ready(h, rng)
    spies = Spies(monkeypatch)
    for _ in h.collector.refresh(step=rng.choice([1, 3, 64])):
        pass
    assert set(spies.looked) == {c for c in changed if c.startswith("c")}  # ahead, only them
    assert set(spies.fresh) | set(spies.warmed) >= {s for s in changed if s.startswith("s")}
    warmed = set(spies.warmed)
    spies.clear()
    # What the reports of the services whose values move read is built ahead: the
    # scrape builds no prefix sums nor attribution index.
    timelines = [t.timeline for t in map(h.rt.services.get, h.rt.owned_sorted("services"))
                 if t is not None]
    built = [(tl._valid, tl._valid3, tl._att_n) for tl in timelines]
    h.check()
    assert [(tl._valid, tl._valid3, tl._att_n) for tl in timelines] == built
    services = h.rt.owned_sorted("services")
    assert set(spies.fresh) >= warmed  # the moving ones are computed at each scrape
    assert spies.looked == []
    assert len(spies.fresh) == len(services) - h.collector.service_lines.reused
    # Reused: at least the services none of whose components blipped (up throughout).
    quiet = [s for s in services if not blipped & set(h.rt.catalog.components_of(s))]
    assert h.collector.service_lines.reused >= len(quiet)
    # A second refresh, nothing written since: nothing looked at.
    spies.clear()
    for _ in h.collector.refresh():
        pass
    assert spies.looked == [] and spies.fresh == [] and spies.warmed == []
    h.now += 0.5
    h.check()


@pytest.mark.parametrize("seed", range(3))
def test_without_refresh_the_scrape_redoes_what_the_backlog_changed(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The counterpart: the work the refresh takes off the first scrape."""
    rng = random.Random(seed)
    h = Harness(rng.randrange(6, 30))
    _, changed = backlog_after_ready(h, rng)
    spies = Spies(monkeypatch)
    h.check()
    assert set(spies.looked) == {c for c in changed if c.startswith("c")}
    assert set(spies.fresh) >= {s for s in changed if s.startswith("s")}


def test_chunks_join_to_the_text() -> None:
    h = Harness(5)
    h.apply("c0", State.DOWN, T0 - 60)
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from agents.exposition import collector as mod

    registry = mod.make_registry(h.rt, CollectorRegistry(auto_describe=False))
    registry.slawatch_collector.clock = lambda: h.now  # type: ignore[attr-defined]
    old = mod.JOIN_KEYS
    mod.JOIN_KEYS = 2
    try:
        chunks = list(render_chunks(registry)[0])
    finally:
        mod.JOIN_KEYS = old
    assert len(chunks) > 3
    expected = generate_latest(registry) + render_report(h.rt.report(h.now)).encode()
    assert b"".join(chunks) == expected


@pytest.mark.parametrize("seed", range(30))
def test_lines_until_is_a_true_bound(seed: int) -> None:
    """Inside [now, until) a fresh report is the same; random histories, dense times."""
    rng = random.Random(seed)
    cat = catalog(1)
    comp = cat.components["c0"]
    tracker = ComponentTracker("c0")
    t = T0 - rng.choice([400.0, 4000.0, 40 * DAY])
    for _ in range(rng.randrange(1, 8)):
        t += rng.choice([0.0, 1.0, 200.0, 300.0, 3600.0, 2 * DAY])
        tracker.apply(ComponentEvent("c0", rng.choice(list(State)), min(t, T0 + 200), None, None),
                      1e9)
    for now in [T0 - 1000, T0, T0 + 100, T0 + 250, T0 + DAY]:
        until = component_lines_until(tracker, now)
        assert until >= now
        if until == now:
            continue
        first = component_report(comp, tracker, now)
        horizon = min(until, now + 40 * DAY)
        probes = {now, horizon - 1e-6 if math.isfinite(until) else horizon}
        probes |= {now + rng.random() * (horizon - now) for _ in range(20)}
        for p in probes:
            if now <= p < until:
                assert component_report(comp, tracker, p) == first, (now, p, until)


def test_moving_components_settle_and_chunks_hold() -> None:
    """A component whose values move is computed at every scrape; once its down
    piece left every window it is reused again; small chunks give the same text."""
    from agents.exposition import collector as mod

    old = mod.JOIN_KEYS
    mod.JOIN_KEYS = 3
    try:
        h = Harness(7)
        h.apply("c1", State.DOWN, T0 - 600)
        h.apply("c1", State.UP, T0 - 300)  # moving in every window
        h.apply("c5", State.DOWN, T0 - 10, flush=False)  # unwritten: computed afresh
        h.check()
        lines = h.collector.component_lines
        before = lines.reused
        h.check()
        assert lines.reused == before
        h.flush()
        h.now += 31 * DAY  # the outage left every window; past the recheck time
        h.check()
        h.now += 1
        h.check()
        assert lines.reused == len(h.rt.catalog.components)  # c5: down throughout
    finally:
        mod.JOIN_KEYS = old


def test_window_lines_fall_back_to_go_formatting() -> None:
    from agents.exposition.collector import _f, _window_lines
    from streams.windows import WINDOWS

    for values in ([0.5] * 8, [math.inf, 0.0, 1.0, 2e6, -1.0, math.nan, 1, 0.25],
                   [1, 1, 1, 1, 1, 1, 1, 1], [1e-7, 3.0, 999999.0, 0.0, 0.0, 0.0, 0.0, 0.0]):
        got = _window_lines("m{x", dict(zip(WINDOWS, values, strict=True)))
        assert got == "".join(f'm{{x,window="{w}"}} {_f(v)}\n'
                              for w, v in zip(WINDOWS, values, strict=True))


def test_float_texts_are_f_texts() -> None:
    """orjson writes the texts of the floats the collector formats in bulk; they must
    be ``_f``'s, whatever the values (the fast path covers [1e-4, 1e6))."""
    import struct

    from agents.exposition.collector import _f, _float_texts

    rng = random.Random(7)
    special = [0.0, -0.0, 1e-4, 9.999999999999999e-05, 1e6, 999999.9999999999, 1e16,
               math.inf, -math.inf, math.nan, 1e-7, 5e-324, 1.0, 0.1 + 0.2, 1 / 3, -0.5]
    for _ in range(200):
        values = []
        for _ in range(rng.randrange(0, 40)):
            r = rng.random()
            if r < 0.2:
                values.append(rng.choice(special))
            elif r < 0.5:
                up, down = rng.uniform(0, 3e6), rng.uniform(0, 3e6)
                values.append(up / (up + down) if up + down else 1.0)
            elif r < 0.7:
                values.append(struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0])
            else:
                values.append(10 ** rng.uniform(-6, 8))
        assert _float_texts(values) == [_f(v) for v in values]
    for _ in range(20):  # in range throughout: the texts are orjson's alone
        values = [rng.uniform(1e-4, 1.0) for _ in range(10_000)]
        assert _float_texts(values) == [_f(v) for v in values]


def test_unwritten_parts_survive_the_next_scrape() -> None:
    """Parts of a scrape not yet written (a slow client) keep their text while a
    later scrape changes the same chunks."""
    from agents.exposition.collector import _text

    h = Harness(4)
    h.apply("c0", State.DOWN, T0 - 600)
    h.apply("c0", State.UP, T0 - 300)
    first = h.collector.report_parts()
    expected = render_report(h.rt.report(h.now))
    h.now += 7.5
    h.apply("c1", State.DOWN, h.now - 1)
    h.check()
    assert "".join(map(_text, first)) == expected


def test_calendars_move_the_lines_without_events() -> None:
    """CONTRACT §6: service time and maintenance windows change numbers at their
    boundaries with no event; the cached lines must follow (fresh report each time)."""
    h = Harness(6)
    data = {
        "service_times": {"bh": {"timezone": "Europe/Berlin", "weekly": ["Mon-Fri 08:00-18:00"]}},
        "maintenance": [{"name": "patch", "components": ["c1", "lonely"],
                         "weekly": ["Sun 02:00-04:00", "Tue 11:00-12:15"],
                         "timezone": "Europe/Berlin"},
                        # T0 + 1 h to T0 + 2 h
                        {"name": "swap", "services": ["s3"], "start": "2023-11-14T23:13:20Z",
                         "end": "2023-11-15T01:13:20Z"}],
        "components": {f"c{i}": {"team": "t"} for i in range(6)} | {"lonely": {"team": "t"}},
        "services": {f"s{i}": {"kind": "internal", "customers": ["x"],
                               "sla": {"target": 0.99, "period": "month" if i % 2 else "30d",
                                       **({"service_time": "bh"} if i < 3 else {})},
                               "requires": [f"c{i}", f"c{(i + 1) % 6}"]} for i in range(6)},
    }
    h.rt.set_catalog(parse_catalog(data, "test"))
    h.apply("c0", State.DOWN, T0 - 700)
    h.apply("c1", State.DOWN, T0 - 2 * DAY)
    h.apply("c4", State.DOWN, T0 + 120)
    h.check()
    for _ in range(60):
        h.now += 1700.0
        h.check()
    text = h.collector.report_text()
    assert 'slawatch_service_in_service_time{kind="internal",service="s0"}' in text
    assert 'slawatch_service_scheduled_maintenance{kind="internal",service="s5"}' in text


@pytest.mark.parametrize("seed", range(4))
def test_a_prepare_begun_before_a_scrape_leaves_the_next_nothing_to_redo(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's prepare runs in steps between scrapes, its ``now`` taken when it
    began: a scrape meanwhile (a later ``now``) must not make the rest of the prepare
    build the chunks again, nor the scrape after it look at every component again."""
    from agents.exposition import collector as mod

    monkeypatch.setattr(mod, "JOIN_KEYS", 4)
    rng = random.Random(seed)
    h = Harness(rng.randrange(8, 30))
    comps = [f"c{i}" for i in range(len(h.rt.catalog.components) - 1)]
    for c in comps:
        h.apply(c, rng.choice([State.UP, State.DOWN]), T0 - rng.choice([40 * DAY, 3600.0, 30.0]))
    lines = h.collector.component_lines
    steps = h.collector.prepare(step=rng.choice([1, 3, 64]))
    for _ in range(rng.randrange(3)):
        next(steps, None)
    h.now += rng.choice([0.5, 30.0])
    h.check()  # the scrape during the prepare
    built: list[object] = []
    real_build = lines._build_steps

    def build_steps(*args: Any) -> Iterator[None]:
        built.append(args)
        return real_build(*args)

    monkeypatch.setattr(lines, "_build_steps", build_steps)
    for _ in steps:
        pass
    spies = Spies(monkeypatch)
    h.now += 0.5
    h.check()
    assert built == []
    assert spies.looked == []  # every proof made by the prepare or the scrape holds
    assert lines.reused + sum(len(ch.moving) for ch in lines._chunks) == len(comps) + 1

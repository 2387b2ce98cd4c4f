"""The services checkpoint waits for the day rollups to be on the broker only when it
prunes a tracker.

A pruned tracker's days before its cut can no longer be recomputed, so their rollups
must be delivered before the pruned tracker is sent. Without a prune the wait only
stopped the pipeline for a broker round trip (the consumer holds its batch lock during a
checkpoint): a lost rollup write is recomputed from the unpruned tracker when the
segments are delivered again. Either way every write is among the futures the commit
waits for. Generated: which services changed, which are due a prune, and their
histories.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.settings import WorkerSettings
from agents.worker.pipeline import PRUNE_EVERY, Pipeline
from agents.worker.rollups import RollupKeeper
from streams.catalog import Catalog, parse_catalog
from streams.service import ServiceTracker
from streams.states import State
from tests.fake_tables import FakeRuntime, PipelineTopics, Table

DAY = 86400.0
NAMES = [f"s{i}" for i in range(6)]


def _catalog() -> Catalog:
    return parse_catalog(orjson.loads(orjson.dumps({
        "components": {f"c{i}": {"team": "t"} for i in range(len(NAMES))},
        "services": {name: {"kind": "internal", "customers": ["x"],
                            "sla": {"target": 0.99, "period": "30d"}, "requires": [f"c{i}"]}
                     for i, name in enumerate(NAMES)},
    })), "test")


class _Rig:
    """A pipeline with day rollups whose sends are delivered when the test says
    (``sent``: each send's topic and future, in order), and per service a tracker with a
    short outage ``ages[i]`` days ago (older than what any window reads), up since."""

    def __init__(self, ages: list[float]) -> None:
        self.catalog = catalog = _catalog()
        self.rt = rt = FakeRuntime(WorkerSettings(), catalog)
        rt.bind_tables(Table(), Table(changelog="services-changelog"))
        self.sent: list[tuple[str, asyncio.Future[Any]]] = []
        self.pipeline = Pipeline(rt, PipelineTopics(), self._send)
        self.keeper = RollupKeeper(rt, Table(changelog="rollups-changelog"))
        self.pipeline.rollups = rt.rollups = self.keeper
        self.now = now = time.time()
        self.starts: dict[str, float] = {}
        self.trackers: dict[str, ServiceTracker] = {}
        for i, name in enumerate(NAMES):
            t0 = self.starts[name] = now - ages[i] * DAY
            tracker = self.trackers[name] = ServiceTracker(name)
            for seg in ((f"c{i}", t0, t0 + 600.0, int(State.DOWN)),
                        (f"c{i}", t0 + 600.0, math.inf, int(State.UP))):
                tracker.apply(seg, catalog.models[name])

    async def _send(self, topic: str, key: Any, value: Any, partition: Any, *rest: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()  # delivered when the test says
        self.sent.append((topic, fut))
        return fut

    def touch(self, names: set[str]) -> None:
        """The services changed since the last checkpoint, and their days."""
        for name in names:
            self.rt.services.put(name, self.trackers[name], 0)
            self.keeper.mark(name, [self.starts[name]])

    def set_due(self, names: set[str]) -> None:
        """Pruned longer ago than PRUNE_EVERY (``names``), or just now (the others)."""
        for name in NAMES:
            self.pipeline._pruned["s:" + name] = self.now - (
                2 * PRUNE_EVERY if name in names else 1.0)


@settings(deadline=None, max_examples=40)
@given(changed=st.sets(st.sampled_from(NAMES), min_size=1),
       due=st.sets(st.sampled_from(NAMES)),
       ages=st.lists(st.floats(40.0, 90.0), min_size=len(NAMES), max_size=len(NAMES)))
def test_the_services_checkpoint_waits_for_the_rollups_only_when_it_prunes(
        changed: set[str], due: set[str], ages: list[float]) -> None:
    rig = _Rig(ages)
    rt, pipeline, sent = rig.rt, rig.pipeline, rig.sent
    now = rig.now
    before = {name: orjson.dumps(tracker.to_obj()) for name, tracker in rig.trackers.items()}
    rig.touch(changed)
    rig.set_due(due)
    pruning = changed & due

    async def run() -> list[Any]:
        task = asyncio.ensure_future(pipeline.checkpoint_services())
        for _ in range(20):
            await asyncio.sleep(0)
        rollups = [f for topic, f in sent if topic == "rollups-changelog"]
        assert rollups, "the changed services' days are written"
        if pruning:
            # Waiting for the rollups: no pruned tracker is sent before they are delivered.
            assert not task.done()
            assert all(topic == "rollups-changelog" for topic, _ in sent)
            for f in rollups:
                f.set_result(None)
        futures: list[Any] = await asyncio.wait_for(task, 5.0)
        if not pruning:
            assert not any(f.done() for f in rollups), "it did not wait for the rollups"
        # The commit still waits for every write, the rollups' included.
        assert {id(f) for _, f in sent} <= {id(f) for f in futures}
        return futures

    asyncio.run(run())
    for name in changed:
        after = orjson.dumps(rt.services.get(name).to_obj())  # type: ignore[union-attr]
        assert (after != before[name]) == (name in due), (name, due)  # pruned iff due
        assert (pipeline._pruned["s:" + name] > now) == (name in due)


@settings(deadline=None, max_examples=25)
@given(first=st.sets(st.sampled_from(NAMES), min_size=1),
       second=st.sets(st.sampled_from(NAMES), min_size=1))
def test_a_pruning_checkpoint_also_waits_for_the_rollups_of_earlier_checkpoints(
        first: set[str], second: set[str]) -> None:
    # Checkpoints overlap: the one before may still have rollup writes in flight when a
    # prune is due. A pruned tracker cannot redo them, so those are waited for too.
    rig = _Rig([60.0] * len(NAMES))
    pipeline, sent, touch = rig.pipeline, rig.sent, rig.touch
    rig.set_due(set())  # not due in the first checkpoint

    async def run() -> None:
        touch(first)
        await asyncio.wait_for(pipeline.checkpoint_services(), 5.0)
        earlier = [f for topic, f in sent if topic == "rollups-changelog"]
        assert earlier and not any(f.done() for f in earlier)
        rig.set_due(set(NAMES))  # now every service is due a prune
        touch(second)
        n = len(sent)
        task = asyncio.ensure_future(pipeline.checkpoint_services())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        assert all(topic == "rollups-changelog" for topic, _ in sent[n:])
        for f in [f for topic, f in sent[n:] if topic == "rollups-changelog"]:
            f.set_result(None)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done(), "it sent the pruned trackers before the earlier rollups"
        for f in earlier:
            f.set_result(None)
        await asyncio.wait_for(task, 5.0)
        assert any(topic == "services-changelog" for topic, _ in sent[n:])

    asyncio.run(run())


@pytest.mark.parametrize(("ends", "slice_"), [(True, 1000), (True, 1), (False, 2)])
def test_the_services_checkpoint_updates_its_rollups_in_slices_held_while_a_scrape_is_written(
        ends: bool, slice_: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The day rollups (computed at once after a backlog: ~1 s at 10,000 services) are
    updated a slice of services at a time, the event loop turning between slices; while
    a /metrics response is being written (``Runtime.scrapes_writing``) the next slice
    waits until it is, or for ``SCRAPE_HOLD_MAX`` in all. An update of one slice does
    not wait. The checkpoint writes what the same update in one go writes."""
    from agents.worker import pipeline as mod

    monkeypatch.setattr(mod, "SCRAPE_HOLD_MAX", 60.0 if ends else 0.2)
    monkeypatch.setattr(mod, "ROLLUP_SLICE", slice_)
    clock = time.time()
    monkeypatch.setattr(time, "time", lambda: clock)  # both checkpoints at one instant
    slices = -(-len(NAMES) // slice_)

    def checkpoint(writing: int) -> tuple[list[int], dict[Any, Any]]:
        rig = _Rig([50.0 + i for i in range(len(NAMES))])
        rig.touch(set(NAMES))
        rig.set_due(set())
        updates: list[int] = []  # responses being written at each slice
        real_update = rig.keeper.update

        def update(*args: Any) -> bool:
            updates.append(rig.rt.scrapes_writing)
            return real_update(*args)

        monkeypatch.setattr(rig.keeper, "update", update)

        async def run() -> None:
            turns = 0

            async def count_turns() -> None:
                nonlocal turns
                while True:
                    await asyncio.sleep(0)
                    turns += 1

            counter = asyncio.ensure_future(count_turns())
            rig.rt.scrapes_writing = writing
            task = asyncio.ensure_future(rig.pipeline.checkpoint_services())
            await asyncio.sleep(0.1)
            if writing and slices > 1:
                assert updates == [1] and rig.sent == [] and not task.done()  # held
                if ends:
                    rig.rt.scrapes_writing = 0
            futures = await asyncio.wait_for(task, 5.0)
            counter.cancel()
            assert len(updates) == slices
            assert turns >= slices - 1  # the loop turned between slices
            assert any(topic == "rollups-changelog" for topic, _ in rig.sent)
            assert any(topic == "services-changelog" for topic, _ in rig.sent)
            assert {id(f) for _, f in rig.sent} <= {id(f) for f in futures}

        asyncio.run(run())
        return updates, dict(rig.keeper.table.table.data)

    updates, written = checkpoint(writing=1)
    assert updates[1:] == [0 if ends else 1] * (slices - 1)
    monkeypatch.setattr(mod, "ROLLUP_SLICE", 10_000)
    slices = 1
    assert checkpoint(writing=0)[1] == written  # the same rollups as in one go


@settings(deadline=None, max_examples=25)
@given(changed=st.sets(st.sampled_from(NAMES), min_size=1),
       ages=st.lists(st.floats(0.0, 20.0), min_size=len(NAMES), max_size=len(NAMES)))
def test_a_prune_that_would_drop_nothing_does_not_wait_for_the_rollups(
        changed: set[str], ages: list[float]) -> None:
    """Services due a prune (after a start every one is) whose histories hold nothing
    older than the retention: nothing is dropped and no cut moves, so the checkpoint
    goes on without waiting for the rollups to be on the broker, and writes the trackers
    as they were. The next prune is PRUNE_EVERY later, as after one that dropped."""
    rig = _Rig(ages)
    rt, pipeline, sent = rig.rt, rig.pipeline, rig.sent
    assert rt.retention > 21 * DAY
    before = {name: orjson.dumps(tracker.to_obj()) for name, tracker in rig.trackers.items()}
    rig.touch(changed)
    rig.set_due(set(NAMES))

    async def run() -> list[Any]:
        task = asyncio.ensure_future(pipeline.checkpoint_services())
        for _ in range(20):
            await asyncio.sleep(0)
        assert task.done(), "it waited for the rollups"
        rollups = [f for topic, f in sent if topic == "rollups-changelog"]
        assert rollups and not any(f.done() for f in rollups)
        futures: list[Any] = task.result()
        assert {id(f) for _, f in sent} <= {id(f) for f in futures}
        return futures

    asyncio.run(run())
    for name in changed:
        assert orjson.dumps(rt.services.get(name).to_obj()) == before[name]  # type: ignore[union-attr]
        assert pipeline._pruned["s:" + name] > rig.now - 1.0
        assert not pipeline._prune_due("s:" + name, rig.now + PRUNE_EVERY - 1.0)


@pytest.mark.parametrize("points", [10, 15, 16, 200])
def test_a_small_component_tracker_is_first_pruned_an_interval_after_it_was_first_written(
        points: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a start every tracker is due a prune. One with fewer than
    FIRST_PRUNE_POINTS points is written as it is and pruned PRUNE_EVERY later (a
    storm at the start spent most of its first components checkpoint compacting a few
    points a tracker); a larger one (a worker restarting often) is pruned at once.
    Pruned or not, its report is the same."""
    from agents.worker.pipeline import FIRST_PRUNE_POINTS
    from streams.component import ComponentTracker
    from streams.events import ComponentEvent
    from streams.report import component_report

    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    catalog = _catalog()
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(changelog="components-changelog"), Table())

    async def send(topic: str, key: Any, value: Any, partition: Any, *rest: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    pipeline = Pipeline(rt, PipelineTopics(), send)
    lateness = rt.settings.allowed_lateness
    tracker = ComponentTracker("c0")
    # 60 days of a flapping component: most of it older than what a prune keeps
    t0 = clock[0] - 60 * DAY
    for i in range(points):
        state = State.UP if i % 2 else State.DOWN
        tracker.apply(ComponentEvent("c0", state, t0 + i * (59 * DAY / points)), lateness)
    unpruned = ComponentTracker.from_obj(tracker.to_obj())
    comp = catalog.components["c0"]
    kept = len(tracker.history.ts)
    assert kept == points
    rt.components.put("c0", tracker, 0)
    asyncio.run(pipeline.checkpoint_components())
    at_once = points >= FIRST_PRUNE_POINTS
    assert (len(tracker.history.ts) < kept) == at_once
    assert component_report(comp, tracker, clock[0]) == component_report(comp, unpruned, clock[0])

    for later, pruned in ((PRUNE_EVERY - 1.0, at_once), (PRUNE_EVERY, True)):
        clock[0] = 1_800_000_000.0 + later
        rt.components.touch("c0", 0)  # written again
        asyncio.run(pipeline.checkpoint_components())
        assert (len(tracker.history.ts) < kept) == pruned, later
        assert component_report(comp, tracker, clock[0]) == \
            component_report(comp, unpruned, clock[0])

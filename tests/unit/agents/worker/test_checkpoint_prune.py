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
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.settings import WorkerSettings
from agents.worker.pipeline import PRUNE_EVERY, Pipeline
from agents.worker.rollups import RollupKeeper
from streams.catalog import Catalog, parse_catalog
from streams.service import ServiceTracker
from streams.states import State
from tests.fake_tables import FakeRuntime, Table

DAY = 86400.0
NAMES = [f"s{i}" for i in range(6)]


def _catalog() -> Catalog:
    return parse_catalog(orjson.loads(orjson.dumps({
        "components": {f"c{i}": {"team": "t"} for i in range(len(NAMES))},
        "services": {name: {"kind": "internal", "customers": ["x"],
                            "sla": {"target": 0.99, "period": "30d"}, "requires": [f"c{i}"]}
                     for i, name in enumerate(NAMES)},
    })), "test")


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name
        self.app = type("App", (), {"conf": type("Conf", (), {"producer_max_request_size": 1 << 20})})

    def get_topic_name(self) -> str:
        return self.name


class _Topics:
    dlq = _Topic("dlq")
    reroute = _Topic("reroute")
    segments = _Topic("segments")


def _table(name: str) -> Table:
    table = Table()
    table.changelog_topic = _Topic(name)  # type: ignore[assignment]
    return table


@settings(deadline=None, max_examples=40)
@given(changed=st.sets(st.sampled_from(NAMES), min_size=1),
       due=st.sets(st.sampled_from(NAMES)),
       ages=st.lists(st.floats(40.0, 90.0), min_size=len(NAMES), max_size=len(NAMES)))
def test_the_services_checkpoint_waits_for_the_rollups_only_when_it_prunes(
        changed: set[str], due: set[str], ages: list[float]) -> None:
    catalog = _catalog()
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(), _table("services-changelog"))
    sent: list[tuple[str, asyncio.Future[Any]]] = []

    async def send(topic: str, key: Any, value: Any, partition: Any, *rest: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()  # delivered when the test says
        sent.append((topic, fut))
        return fut

    pipeline = Pipeline(rt, _Topics(), send)
    keeper = RollupKeeper(rt, _table("rollups-changelog"))
    pipeline.rollups = rt.rollups = keeper
    now = time.time()
    before: dict[str, bytes] = {}
    for i, name in enumerate(NAMES):
        # A short outage weeks ago (older than what any window reads), up since.
        t0 = now - ages[i] * DAY
        tracker = ServiceTracker(name)
        for seg in ((f"c{i}", t0, t0 + 600.0, int(State.DOWN)),
                    (f"c{i}", t0 + 600.0, math.inf, int(State.UP))):
            tracker.apply(seg, catalog.models[name])
        before[name] = orjson.dumps(tracker.to_obj())
        if name in changed:
            rt.services.put(name, tracker, 0)
            keeper.mark(name, [t0])
        # Pruned longer ago than PRUNE_EVERY, or just now.
        pipeline._pruned["s:" + name] = now - (2 * PRUNE_EVERY if name in due else 1.0)
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
    catalog = _catalog()
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(), _table("services-changelog"))
    sent: list[tuple[str, asyncio.Future[Any]]] = []

    async def send(topic: str, key: Any, value: Any, partition: Any, *rest: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        sent.append((topic, fut))
        return fut

    pipeline = Pipeline(rt, _Topics(), send)
    keeper = RollupKeeper(rt, _table("rollups-changelog"))
    pipeline.rollups = rt.rollups = keeper
    now = time.time()
    trackers: dict[str, ServiceTracker] = {}
    for i, name in enumerate(NAMES):
        t0 = now - 60 * DAY
        tracker = trackers[name] = ServiceTracker(name)
        for seg in ((f"c{i}", t0, t0 + 600.0, int(State.DOWN)),
                    (f"c{i}", t0 + 600.0, math.inf, int(State.UP))):
            tracker.apply(seg, catalog.models[name])
        pipeline._pruned["s:" + name] = now - 1.0  # not due in the first checkpoint

    def touch(names: set[str]) -> None:
        for name in names:
            rt.services.put(name, trackers[name], 0)
            keeper.mark(name, [now - 60 * DAY])

    async def run() -> None:
        touch(first)
        await asyncio.wait_for(pipeline.checkpoint_services(), 5.0)
        earlier = [f for topic, f in sent if topic == "rollups-changelog"]
        assert earlier and not any(f.done() for f in earlier)
        for name in NAMES:  # now every service is due a prune
            pipeline._pruned["s:" + name] = now - 2 * PRUNE_EVERY
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

"""Checkpoints sent as record batches, a partition at a time.

``TrackerTable.flush`` writes a partition's dirty keys under one partition context and,
given ``send_many`` (the pipeline's), hands each partition's records to the producer as
record batches. What the changelog holds must not change: per partition the same
records in the same order as one ``send`` per record (the order the crash tests and the
incremental-record tests rely on), the store the same, and RocksDB's persisted offset
the partition's last record (a restart recovers only what follows it).

The batches are aiokafka's own ``BatchBuilder``s (their size limit decides where a run
ends), read back with aiokafka's record decoder.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import faust.streams  # noqa: F401  # flush imports it; its first import runs `file`
import orjson
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from agents.settings import WorkerSettings
from agents.worker import patchlog
from agents.worker.pipeline import Pipeline
from agents.worker.state import (
    TrackerTable,
    decode_component,
    decode_service,
    encode_component,
    encode_service,
)
from streams.catalog import parse_catalog
from streams.component import ComponentTracker
from streams.engine import Engine
from streams.service import ServiceTracker
from tests.fake_tables import FakeRuntime, Log, PipelineTopics, Store, Table, flush_to, replay

CATALOG = {
    "components": {f"c{i}": {"team": "t", "kpi": 0.99} for i in range(9)},
    "services": {
        f"s{j}": {"kind": "external", "customers": ["x"], "sla": {"target": 0.999, "period": "30d"},
                  "requires": [{"any": [f"c{(j + k) % 9}" for k in range(3)]}, f"c{(j + 4) % 9}"]}
        for j in range(7)
    },
}


class _Meta:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition = partition
        self.offset = offset
        self.topic_partition = ("changelog", partition)


class _OffsetStore(Store):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[Any, int] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp] = offset


class _Producer:
    """aiokafka's producer as the pipeline uses it: real record batches, delivered at
    once with offsets counted per partition; ``send`` one record on the producer's own
    path."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.logs: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        self.batches = 0

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0, is_transactional=False)

    def _deliver(self, partition: int, recs: list[tuple[bytes | None, bytes | None]]) -> Any:
        log = self.logs.setdefault(partition, [])
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(_Meta(partition, len(log)))
        log.extend(recs)
        return fut

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        self.batches += 1
        recs = [(r.key, r.value) for r in DefaultRecordBatch(bytes(batch._build()))]
        return self._deliver(partition, recs)

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int,
                   timestamp: Any = None, headers: Any = None) -> Any:
        return self._deliver(partition, [(key, value)])


def _pipeline(producer: _Producer) -> Pipeline:
    rt = FakeRuntime(WorkerSettings(), parse_catalog(CATALOG, "test"))
    rt.bind_tables(Table(), Table())
    pipeline = Pipeline(rt, PipelineTopics(), producer.send)
    pipeline.raw_producer = lambda: producer
    return pipeline


def _tables(t: Table, svc: bool, chunk: int) -> TrackerTable[Any]:
    tt: TrackerTable[Any] = (
        TrackerTable(t, decode_service, encode_service, ServiceTracker.to_record,
                     ServiceTracker.from_record) if svc else
        TrackerTable(t, decode_component, encode_component, ComponentTracker.to_record,
                     ComponentTracker.from_record, ComponentTracker.small_records))
    tt.incremental_from = 400
    tt.chunk_size = chunk
    return tt


def _checkpoints(seed: int, n: int) -> list[tuple[list[bytes], float, bool]]:
    """Batches of events (some late), ``now``, and whether to prune before writing."""
    rng = random.Random(seed)
    ts = 1_700_000_000.0
    out = []
    for k in range(n):
        batch = []
        for _ in range(rng.randrange(1, 30)):
            ts += rng.uniform(0.1, 40.0)
            at = ts - rng.uniform(0, 500) if rng.random() < 0.15 else ts
            batch.append(orjson.dumps({"component": f"c{rng.randrange(9)}",
                                       "state": rng.choice(["up", "down", "maintenance"]),
                                       "ts": round(at, 3)}))
        out.append((batch, ts + 1, k % 9 == 8))
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("batch_size", [200, 1500, 16384])
def test_batched_checkpoints_write_the_per_record_changelog(seed: int, batch_size: int) -> None:
    rng = random.Random(seed * 7 + batch_size)
    monkey = pytest.MonkeyPatch()
    monkey.setattr(patchlog, "MAX_PATCHES", 5)
    try:
        engine = Engine(parse_catalog(CATALOG, "test"), allowed_lateness=600.0)
        # the component c_i and service s_j live in partitions picked at random
        parts = {name: rng.randrange(4) for name in [*CATALOG["components"], *CATALOG["services"]]}
        chunk = rng.choice([700, 1 << 19])  # small: values in parts too
        for svc in (False, True):
            one_by_one, batched_t = Table(), Table()
            batched_t.data = _OffsetStore()
            a, b = _tables(one_by_one, svc, chunk), _tables(batched_t, svc, chunk)
            log: Log = []
            producer = _Producer(batch_size)
            pipeline = _pipeline(producer)
            # Two engines fed the same: a checkpoint marks what it wrote in the trackers.
            engines = [Engine(parse_catalog(CATALOG, "test"), allowed_lateness=600.0)
                       for _ in range(2)]
            encode = encode_service if svc else encode_component
            written: dict[str, bytes] = {}
            for batch, now, prune in _checkpoints(seed, 40):
                # only some trackers changed since the last checkpoint, in any order
                names = [n for n in CATALOG["services" if svc else "components"]
                         if rng.random() < 0.7]
                rng.shuffle(names)
                for engine, table in zip(engines, (a, b), strict=True):
                    engine.apply_raw_many(batch, now)
                    trackers: dict[str, Any] = engine.services if svc else engine.components
                    if prune:
                        for name, tr in trackers.items():
                            if svc:
                                tr.prune(now - 3000, engine.catalog.calendar(name))
                            else:
                                tr.prune(now - 3000, 600.0)
                    for name in names:
                        if name in trackers:
                            table.put(name, trackers[name], parts[name])
                            written[name] = encode(trackers[name])
                asyncio.run(flush_to(a, log))
                asyncio.run(b.flush(producer.send, send_many=pipeline.send_many))
                for p in set(parts.values()):
                    want = [(k, v) for k, v, q in log if q == p]
                    assert producer.logs.get(p, []) == want, p
                    if want:
                        assert batched_t.data.persisted[("changelog", p)] == len(want) - 1
                assert dict(batched_t.data) == dict(one_by_one.data)
            # A restart rebuilds the trackers from the batched changelog.
            rebuilt = replay([(k, v, p) for p, recs in producer.logs.items() for k, v in recs])
            got = _tables(rebuilt, svc, chunk)
            assert {n: encode(got.get(n)) for n in written} == written
            assert producer.batches > 0
    finally:
        monkey.undo()


@pytest.mark.parametrize("batch_size", [120, 1000, 16384])
def test_send_batches_sends_every_record_once_in_order(batch_size: int) -> None:
    """Runs end where a batch is full; a record larger than a batch goes alone on the
    producer's path; the counts add up to the records."""
    rng = random.Random(batch_size)
    producer = _Producer(batch_size)
    pipeline = _pipeline(producer)
    items = [(f"k{i}".encode(), None if rng.random() < 0.1 else bytes(rng.randrange(1, 400)),
              None) for i in range(300)]
    runs = asyncio.run(pipeline._send_batches("t", 2, items))
    assert producer.logs[2] == [(k, v) for k, v, _ in items]
    assert sum(n for _, n in runs) == len(items)
    offsets = [fut.result().offset for fut, _ in runs]
    assert offsets == [sum(n for _, n in runs[:i]) for i in range(len(runs))]


def test_the_partitions_batches_go_side_by_side() -> None:
    """A partition's next batch waits until its last one left for the broker (aiokafka's
    ``add_batch``), and a request carries one batch per partition: each partition's
    first batch is handed over before any partition's second, so a checkpoint takes a
    round trip per batch of the largest partition, not per batch of all of them."""
    order: list[int] = []

    class _Waiting(_Producer):
        async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
            order.append(partition)
            await asyncio.sleep(0)  # as add_batch waits for the partition's last batch
            return await super().send_batch(batch, topic, partition=partition)

    producer = _Waiting(300)
    pipeline = _pipeline(producer)
    t = Table()
    t.data = _OffsetStore()
    tt: TrackerTable[dict[str, Any]] = TrackerTable(t, orjson.loads, orjson.dumps)
    for i in range(60):
        tt.put(f"k{i}", {"v": "x" * 100, "i": i}, i % 4)
    asyncio.run(tt.flush(producer.send, send_many=pipeline.send_many))
    assert sorted(order[:4]) == [0, 1, 2, 3]
    assert len(order) > 8
    assert {p: [k for k, _ in recs] for p, recs in producer.logs.items()} == {
        p: [f"k{i}".encode() for i in range(60) if i % 4 == p] for p in range(4)}

"""A checkpoint hands each partition's changelog records to the producer together
(``TrackerTable.flush(send_many=...)``, ``Pipeline.send_many``), and stage 1 reads and
marks a slice's trackers at once (``get_many``, ``touch_many``).

What a recovering worker reads must not depend on how the records were sent: the same
records, in the same order within each partition, as one send per record; the store's
persisted offset is the last record's; a record larger than a batch still goes alone,
in its place.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, NamedTuple

import orjson
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from agents.worker.pipeline import Pipeline
from agents.worker.state import TrackerTable
from tests.fake_tables import Log, Store, Table, flush_to, replay


class TP(NamedTuple):
    topic: str
    partition: int


class Meta(NamedTuple):
    topic_partition: TP
    offset: int


class OffsetStore(Store):
    def __init__(self) -> None:
        super().__init__()
        self.persisted: dict[int, int] = {}

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp.partition] = offset


def _table() -> tuple[Table, TrackerTable[Any]]:
    t = Table()
    t.data = OffsetStore()
    tt: TrackerTable[Any] = TrackerTable(t, orjson.loads, orjson.dumps)
    tt.chunk_size = 600  # some values in parts: several records of one key, in order
    return t, tt


def _fill(tt: TrackerTable[Any], rng: random.Random, rounds: int) -> list[list[tuple[str, Any, int]]]:
    puts = []
    for r in range(rounds):
        batch = []
        for k in rng.sample(range(40), 25):
            value = {"k": k, "r": r, "pad": "x" * rng.choice((5, 50, 900, 2000))}
            batch.append((f"key{k}", value, k % 4))
        puts.append(batch)
    return puts


@pytest.mark.parametrize("seed", range(6))
def test_send_many_writes_what_one_send_a_record_writes(seed: int) -> None:
    rng = random.Random(seed)
    t1, one = _table()
    t2, many = _table()
    log1: Log = []
    log2: Log = []
    offsets: dict[int, int] = {}
    sends = []

    async def send_many(topic: str, parts: dict[int, list[tuple[bytes, bytes | None]]]
                        ) -> dict[int, list[tuple[Any, int]]]:
        out: dict[int, list[tuple[Any, int]]] = {}
        for partition, items in parts.items():
            i = 0
            while i < len(items):  # batches of 1-3 records, as a producer's batches vary
                part = items[i:i + rng.randint(1, 3)]
                fut = asyncio.get_running_loop().create_future()
                fut.set_result(Meta(TP(topic, partition), offsets.get(partition, 0)))
                offsets[partition] = offsets.get(partition, 0) + len(part)
                log2.extend((k, v, partition) for k, v in part)
                out.setdefault(partition, []).append((fut, len(part)))
                i += len(part)
        sends.append(sum(map(len, out.values())))
        return out

    for batch in _fill(one, rng, 4):
        for key, value, p in batch:
            one.put(key, value, p)
            many.put(key, value, p)
        asyncio.run(flush_to(one, log1))

        async def flush() -> list[Any]:
            return await many.flush(None, send_many=send_many)  # type: ignore[arg-type]

        start = len(sends)
        futures = asyncio.run(flush())
        assert len(futures) == sum(sends[start:])  # a future a batch, not a record
    for p in range(4):
        assert [r for r in log2 if r[2] == p] == [r for r in log1 if r[2] == p]
        # the last record sent to the partition: where a restart's recovery may start
        assert t2.data.persisted[p] == offsets[p] - 1  # type: ignore[attr-defined]
    assert sorted(log2, key=repr) == sorted(log1, key=repr)
    assert dict(replay(log2).data) == dict(replay(log1).data) == dict(t2.data) == dict(t1.data)


def test_get_many_and_touch_many_are_get_and_touch_of_each_key() -> None:
    _, tt = _table()
    for k in range(10):
        tt.put(f"s{k}", {"k": k}, 0)
    asyncio.run(flush_to(tt, []))
    for k in range(5, 15):  # some changed since the flush, some new
        tt.put(f"s{k}", {"k": k, "new": True}, 1)
    keys = {f"s{k}" for k in range(0, 20, 2)}  # stored, changed and missing keys
    got = tt.get_many(keys)
    assert got == {k: v for k in keys if (v := tt.get(k)) is not None}
    assert all(got[k] is tt.get(k) for k in got)
    tt.touch_many(["s1", "s3"], 2)
    assert tt._dirty["s1"] == tt._dirty["s3"] == 2


class _Raw:
    """aiokafka's producer as ``send_many`` uses it: real record batches, sends kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent: list[tuple[str, int, int]] = []  # topic, partition, records

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.size, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, partition: int) -> Any:
        self.sent.append((topic, partition, batch.record_count()))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def _pipeline(raw: _Raw | None, alone: list[bytes | None]) -> Pipeline:
    pipe = Pipeline.__new__(Pipeline)
    pipe.raw_producer = None if raw is None else (lambda: raw)

    async def send(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   headers: Any = None) -> Any:
        alone.append(key)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    pipe.send = send  # type: ignore[method-assign]
    return pipe


ITEMS: list[tuple[bytes | None, bytes | None, Any]] = [
    (f"k{i}".encode(), b"v" * (2000 if i == 7 else 40), None) for i in range(30)]


def test_pipeline_send_many_batches_in_order_a_large_record_in_a_batch_of_its_own() -> None:
    raw = _Raw(1024)
    alone: list[bytes | None] = []
    seen: list[tuple[int, int]] = []
    out = asyncio.run(_pipeline(raw, alone).send_many(
        "t", {3: ITEMS}, lambda q, fut, n: seen.append((q, n))))
    counts = [n for _, n in out[3]]
    assert sum(counts) == len(ITEMS) and seen == [(3, n) for n in counts] and not alone
    assert counts[:2] == [7, 1]  # k0-k6, then k7 (larger than a batch) alone
    assert [n for _, p, n in raw.sent if p == 3] == counts


def test_pipeline_send_many_lets_the_partitions_take_turns_a_batch_each() -> None:
    """A batch waits for its partition's previous one to be taken, one request a broker
    at a time: sent partition after partition, each request would carry one batch."""
    raw = _Raw(1024)
    rng = random.Random(1)
    parts = {q: [(f"{q}-{i}".encode(), b"v" * rng.choice((10, 100, 600)), None)
                 for i in range(rng.randint(0, 60))] for q in range(5)}
    out = asyncio.run(_pipeline(raw, []).send_many("t", parts))
    assert set(out) == set(parts)
    for q, items in parts.items():
        assert sum(n for _, n in out[q]) == len(items)
        assert [n for _, p, n in raw.sent if p == q] == [n for _, n in out[q]]
    # every run of sends names each partition with batches left once, in turn
    left = {q: len(out[q]) for q in parts if out[q]}
    k = 0
    while left:
        turn = [p for _, p, _ in raw.sent[k:k + len(left)]]
        assert turn == list(left)
        k += len(turn)
        left = {q: n - 1 for q, n in left.items() if n > 1}
    assert k == len(raw.sent)


def test_pipeline_send_many_without_record_batches_sends_each_record() -> None:
    alone: list[bytes | None] = []
    out = asyncio.run(_pipeline(None, alone).send_many("t", {3: ITEMS}))
    assert [n for _, n in out[3]] == [1] * len(ITEMS)
    assert alone == [k for k, _, _ in ITEMS]

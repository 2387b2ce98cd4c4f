"""The records of a batch topic fetched from a real broker (tansu) are aiokafka's own.

aiokafka_patches.lean_records_for has the C reader (``streams._native.kafka_records``)
read a batch topic's fetched bytes; the unit tests compare it with aiokafka on batches
built in the test. Here the same records go to a lean topic and to a plain one through
aiokafka's producer (batches as the broker stores and serves them: several records a
batch, keys, headers, null values; gzip-compressed on another pair of topics, which the
lean path hands to aiokafka's own reader), and both topics are read back from the start
and from the middle of a batch: every field and every partition's position must agree.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from agents.clients.broker import EmbeddedBroker
from agents.transport.aiokafka_patches import LeanRecord, lean_records_for

PARTITIONS = 3
N = 600


async def _produce(bootstrap: str, topics: tuple[str, str], compression: str | None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                compression_type=compression)
    await producer.start()
    try:
        futures = []
        for i in range(N):
            key = None if i % 7 == 0 and i % 11 else f"k{i}".encode()
            value = None if i % 11 == 0 else b'{"component":"c%d","state":"up","ts":%d.5}' % (i, i)
            headers = [("origin", f"{i}".encode()), ("empty", b"")] if i % 5 == 0 else None
            for topic in topics:
                futures.append(await producer.send(topic, value, key=key, partition=i % PARTITIONS,
                                                   timestamp_ms=1_765_000_000_000 + i // 3,
                                                   headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, start: dict[int, int]) -> tuple[list[Any], dict[int, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        want = sum(len(range(start[p], -(-(N - p) // PARTITIONS))) for p in range(PARTITIONS))
        got: list[Any] = []
        for _ in range(200):
            batches = await consumer.getmany(timeout_ms=200)
            for recs in batches.values():
                got += recs
            if len(got) >= want:
                break
        return got, {tp.partition: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


def _fields(recs: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((r.partition, r.offset, r.timestamp, r.timestamp_type, r.key, r.value,
                   tuple(r.headers)) for r in recs)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_lean_records_from_the_broker_are_aiokafkas(kafka_broker: EmbeddedBroker,
                                                     compression: str | None) -> None:
    lean, plain = f"lean-{compression}", f"plain-{compression}"
    lean_records_for([lean])
    kafka_broker.create_topics({lean: PARTITIONS, plain: PARTITIONS})
    asyncio.run(_produce(kafka_broker.bootstrap, (lean, plain), compression))
    for start in ({p: 0 for p in range(PARTITIONS)}, {0: 1, 1: 37, 2: 150}):
        got_lean, pos_lean = asyncio.run(_consume(kafka_broker.bootstrap, lean, start))
        got_plain, pos_plain = asyncio.run(_consume(kafka_broker.bootstrap, plain, start))
        assert all(type(r) is LeanRecord for r in got_lean)
        assert len(got_lean) == sum(-(-(N - p) // PARTITIONS) - start[p] for p in range(PARTITIONS))
        assert _fields(got_lean) == _fields(got_plain)
        assert pos_lean == pos_plain

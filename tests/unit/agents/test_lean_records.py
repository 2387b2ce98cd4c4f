"""aiokafka hands on a batch topic's records as ``LeanRecord`` tuples with the same
fields, offsets and positions as its own ``ConsumerRecord``s.

Generated: record batches of any sizes, keys, values and headers (v2 format, built with
aiokafka's own builder), a fetch offset anywhere in the first batch (as a broker answers), and a
``getall`` limit that stops in the middle of a batch. The same bytes are unpacked for a
topic registered with ``lean_records_for`` and for one that is not (aiokafka's own
path), and compared field by field, together with ``next_fetch_offset`` after each
``getall``: that is the position aiokafka fetches from next.
"""

from __future__ import annotations

import gc
import struct
from typing import Any

import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.transport.aiokafka_patches import LeanRecord, lean_records_for

LEAN, PLAIN = "lean-topic", "plain-topic"
lean_records_for([LEAN])

records = st.lists(st.tuples(st.none() | st.binary(max_size=20), st.none() | st.binary(max_size=60),
                             st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)),
                                      max_size=2)),
                   min_size=1, max_size=12)


def _log(batches: list[list[tuple[Any, Any, Any]]], base: int) -> tuple[bytes, int]:
    """The bytes of consecutive v2 record batches from offset ``base``; (bytes, end)."""
    out = bytearray()
    offset = base
    for recs in batches:
        builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                            producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                            batch_size=1 << 20)
        for i, (key, value, headers) in enumerate(recs):
            builder.append(i, timestamp=1_700_000_000_000 + offset + i, key=key, value=value,
                           headers=headers)
        data = bytes(builder.build())
        out += struct.pack(">q", offset) + data[8:]  # the base offset
        offset += len(recs)
    return bytes(out), offset


def _unpack(topic: str, data: bytes, fetch_offset: int, limit: int | None) -> tuple[list[Any], list[int]]:
    """Every record, taken ``limit`` at a time, and the position after each take."""
    part = PartitionRecords(TopicPartition(topic, 3), MemoryRecords(data), None, fetch_offset,
                            None, None, True, 0)
    got: list[Any] = []
    positions = []
    while True:
        take = []
        for rec in part:
            take.append(rec)
            if limit is not None and len(take) >= limit:
                break
        else:  # exhausted (aiokafka's iterator cannot be iterated again)
            positions.append(part.next_fetch_offset)
            return got + take, positions
        positions.append(part.next_fetch_offset)
        got += take


@settings(max_examples=200, deadline=None)
@given(st.lists(records, min_size=1, max_size=5), st.integers(0, 1000), st.data(),
       st.none() | st.integers(1, 7))
def test_lean_records_are_aiokafkas_fields(batches: list[Any], base: int, data: Any,
                                           limit: int | None) -> None:
    log, end = _log(batches, base)
    # A broker's answer starts with the batch that holds the fetch offset.
    fetch_offset = data.draw(st.integers(base, base + len(batches[0]) - 1), label="fetch offset")
    lean, lean_pos = _unpack(LEAN, log, fetch_offset, limit)
    plain, plain_pos = _unpack(PLAIN, log, fetch_offset, limit)
    assert lean_pos == plain_pos
    assert len(lean) == len(plain) == end - fetch_offset
    for a, b in zip(lean, plain, strict=True):
        assert type(a) is LeanRecord
        # Off the cyclic collector's lists: a worker holds tens of thousands of them.
        assert not gc.is_tracked(a)
        assert (a.partition, a.offset, a.timestamp, a.timestamp_type, a.key, a.value) == (
            b.partition, b.offset, b.timestamp, b.timestamp_type, b.key, b.value)
        assert a.topic == LEAN and b.topic == PLAIN
        assert tuple(a.headers) == tuple(b.headers)


def test_a_corrupt_batch_is_refused_as_aiokafka_does() -> None:
    log, _ = _log([[(b"k", b"v", [])] * 3], 0)
    bad = bytearray(log)
    bad[-1] ^= 0xFF  # a byte of the last record: the batch's CRC no longer matches
    for topic in (LEAN, PLAIN):
        with pytest.raises(CorruptRecordException):
            _unpack(topic, bytes(bad), 0, None)

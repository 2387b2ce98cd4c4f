"""aiokafka hands on a batch topic's records as ``LeanRecord`` tuples with the same
fields, offsets and positions as its own ``ConsumerRecord``s.

Generated: record batches of any sizes, keys, values and headers (v2 format, built with
aiokafka's own builder), a fetch offset anywhere in the first batch (as a broker answers), and a
``getall`` limit that stops in the middle of a batch. The same bytes are unpacked for a
topic registered with ``lean_records_for`` and for one that is not (aiokafka's own
path), and compared field by field, together with ``next_fetch_offset`` after each
``getall``: that is the position aiokafka fetches from next.

With the C extension, the fetched bytes are read by ``streams._native.kafka_records``
(installed as aiokafka's ``MemoryRecords``, ``FetchedBytes``): the same comparison runs
for it on logs that mix what it reads (uncompressed v2 batches, offsets missing in the
middle of a batch as after compaction, log-append time, transactional batches) with
what it must skip or hand to aiokafka (control batches, compressed batches, the old
message format), through ``getall`` without a limit (one call per partition) and with
one; and a corrupt CRC or a malformed batch raises aiokafka's error on every path.
"""

from __future__ import annotations

import gc
import struct
import weakref
from typing import Any

import pytest
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import FetchResult, PartitionRecords
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.legacy_records import LegacyRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords, _MemoryRecordsPy
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.transport.aiokafka_patches import FetchedBytes, LeanRecord, lean_records_for
from streams import native

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
    assert len(lean) == end - fetch_offset
    _same_records(lean, plain)


def test_a_corrupt_batch_is_refused_as_aiokafka_does() -> None:
    log, _ = _log([[(b"k", b"v", [])] * 3], 0)
    bad = bytearray(log)
    bad[-1] ^= 0xFF  # a byte of the last record: the batch's CRC no longer matches
    for topic in (LEAN, PLAIN):
        with pytest.raises(CorruptRecordException):
            _unpack(topic, bytes(bad), 0, None)


# ---- the C reader (streams._native.kafka_records) -------------------------------------

needs_native = pytest.mark.skipif(native.native is None, reason="the C extension is not built")

#: How a generated batch is made: what kafka_records reads itself, and what it leaves.
KINDS = ("plain", "plain", "plain", "log-append", "transactional", "control", "gzip", "v1")


def _batch(kind: str, base: int, recs: list[tuple[Any, Any, Any]], deltas: list[int]) -> bytes:
    """One batch of ``kind`` at offset ``base``, record ``i`` at ``base + deltas[i]``."""
    if kind == "v1":  # the old message format: one message set entry per record
        builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
        for (key, value, _), delta in zip(recs, deltas, strict=True):
            builder.append(base + delta, timestamp=1_700_000_000_000 + delta, key=key,
                           value=value if value is not None or key is not None else b"")
        return bytes(builder.build())
    transactional = kind in ("transactional", "control")
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=1 if kind == "gzip" else 0, is_transactional=transactional,
        producer_id=7 if transactional else -1, producer_epoch=0 if transactional else -1,
        base_sequence=0 if transactional else -1, batch_size=1 << 20)
    for (key, value, headers), delta in zip(recs, deltas, strict=True):
        builder.append(delta, timestamp=1_700_000_000_000 + base + delta * 3, key=key, value=value,
                       headers=headers)
    data = bytearray(builder.build())
    data[:8] = struct.pack(">q", base)
    extra = {"control": 0x20, "log-append": 0x08}.get(kind, 0)
    if extra:  # attribute bits the builder has no parameter for; then the CRC again
        attrs = struct.unpack_from(">h", data, 21)[0] | extra
        struct.pack_into(">h", data, 21, attrs)
        struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


@st.composite
def logs(draw: Any) -> tuple[bytes, int, int]:
    """(bytes of a fetched partition, fetch offset, partition)."""
    out = bytearray()
    offset = draw(st.integers(0, 10**12))
    first = None
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(KINDS), label="kind")
        recs = draw(records)
        if kind == "v1":
            recs = [(k, v, []) for k, v, _ in recs]
        gaps = draw(st.lists(st.integers(0, 3), min_size=len(recs), max_size=len(recs)))
        deltas, d = [], 0
        for gap in gaps:
            d += gap if deltas else 0
            deltas.append(d)
            d += 1
        data = _batch(kind, offset, recs, deltas)
        if first is None:
            first = (offset, offset + deltas[-1])
        out += data
        offset += deltas[-1] + 1 + draw(st.integers(0, 2))
    if draw(st.booleans(), label="partial batch at the end"):
        out += data[:draw(st.integers(1, len(data) - 1))]
    assert first is not None
    fetch_offset = draw(st.integers(*first), label="fetch offset")
    return bytes(out), fetch_offset, draw(st.integers(0, 200), label="partition")


class _State:
    paused = False

    def __init__(self, position: int) -> None:
        self.position = position

    def consumed_to(self, position: int) -> None:
        self.position = position


class _Assignment:
    """What FetchResult reads of aiokafka's assignment: one partition, consuming."""

    active = True

    def __init__(self, position: int) -> None:
        self.state = _State(position)

    def state_value(self, tp: TopicPartition) -> _State:
        return self.state


def _getall(records_class: Any, topic: str, data: bytes, fetch_offset: int, partition: int,
            limit: int | None, check_crcs: bool = True) -> tuple[list[Any], list[int]]:
    """As Fetcher.fetched_records: ``getall(limit)`` until the partition is done; the
    records and the position after each call."""
    tp = TopicPartition(topic, partition)
    assignment = _Assignment(fetch_offset)
    part = PartitionRecords(tp, records_class(data), None, fetch_offset, None, None, check_crcs, 0)
    result = FetchResult(tp, assignment=assignment, partition_records=part, backoff=0)
    got: list[Any] = []
    positions = []
    while result.has_more():
        got += result.getall(limit)
        positions.append(assignment.state.position)
    return got, positions


def _same_records(lean: list[Any], plain: list[Any]) -> None:
    assert len(lean) == len(plain)
    for a, b in zip(lean, plain, strict=True):
        assert type(a) is LeanRecord
        # Off the cyclic collector's lists: a worker holds tens of thousands of them.
        assert not gc.is_tracked(a)
        assert (a.partition, a.offset, a.timestamp, a.timestamp_type, a.key, a.value) == (
            b.partition, b.offset, b.timestamp, b.timestamp_type, b.key, b.value)
        assert a.topic == LEAN and b.topic == PLAIN
        assert tuple(a.headers) == tuple(b.headers)


@needs_native
def test_fetched_bytes_replace_aiokafkas_memory_records() -> None:
    assert fetcher.MemoryRecords is FetchedBytes


@needs_native
@settings(max_examples=300, deadline=None)
@given(logs(), st.none() | st.integers(1, 7), st.booleans())
def test_the_c_reader_gives_aiokafkas_records_and_positions(log: tuple[bytes, int, int],
                                                           limit: int | None, check_crcs: bool) -> None:
    data, fetch_offset, partition = log
    # aiokafka's pure-Python MemoryRecords: its C one (0.14) reads an old-format (v1)
    # message after a v2 batch as a v2 batch, and fails on it.
    plain, plain_pos = _getall(_MemoryRecordsPy, PLAIN, data, fetch_offset, partition, limit, check_crcs)
    lean, lean_pos = _getall(FetchedBytes, LEAN, data, fetch_offset, partition, limit, check_crcs)
    assert lean_pos == plain_pos
    _same_records(lean, plain)


@needs_native
@settings(max_examples=100, deadline=None)
@given(logs())
def test_getone_and_getall_share_the_position(log: tuple[bytes, int, int]) -> None:
    """A partition read one record at a time, then the rest at once."""
    data, fetch_offset, partition = log
    results = []
    for records_class, topic in ((_MemoryRecordsPy, PLAIN), (FetchedBytes, LEAN)):
        tp = TopicPartition(topic, partition)
        assignment = _Assignment(fetch_offset)
        part = PartitionRecords(tp, records_class(data), None, fetch_offset, None, None, True, 0)
        result = FetchResult(tp, assignment=assignment, partition_records=part, backoff=0)
        got = []
        for _ in range(2):
            if result.has_more():  # (aiokafka's getone fails on a finished partition)
                got.append(result.getone())
        if result.has_more():
            got += result.getall()
        results.append(([r for r in got if r is not None], assignment.state.position))
    (plain, plain_pos), (lean, lean_pos) = results
    assert lean_pos == plain_pos
    _same_records(lean, plain)


def _flip(data: bytes, at: int) -> bytes:
    bad = bytearray(data)
    bad[at] ^= 0xFF
    return bytes(bad)


@needs_native
@pytest.mark.parametrize("limit", [None, 2])
def test_a_corrupt_crc_raises_on_the_c_path(limit: int | None) -> None:
    good = _batch("plain", 10, [(b"k", b"v" * 20, [])] * 3, [0, 1, 2])
    bad = _flip(_batch("plain", 13, [(b"k", b"v" * 20, [])] * 3, [0, 1, 2]), -3)  # a byte of the last value
    after = []
    for records_class, topic in ((MemoryRecords, PLAIN), (FetchedBytes, LEAN)):
        tp = TopicPartition(topic, 0)
        assignment = _Assignment(10)
        part = PartitionRecords(tp, records_class(good + bad), None, 10, None, None, True, 0)
        result = FetchResult(tp, assignment=assignment, partition_records=part, backoff=0)
        if limit is not None:
            assert [r.offset for r in result.getall(limit)] == [10, 11]
        with pytest.raises(CorruptRecordException, match="Invalid CRC"):
            result.getall(limit)
        # What aiokafka does next (the partition is fetched again from its position).
        after.append((result.getall(limit), assignment.state.position, result.has_more()))
    assert after[0] == after[1]
    # Without check_crcs the records are read as they are.
    lean, _ = _getall(FetchedBytes, LEAN, good + bad, 10, 0, None, check_crcs=False)
    plain, _ = _getall(MemoryRecords, PLAIN, good + bad, 10, 0, None, check_crcs=False)
    _same_records(lean, plain)
    assert len(lean) == 6


@needs_native
@pytest.mark.parametrize("field", ["count", "record length"])
def test_a_malformed_batch_raises_aiokafkas_error(field: str) -> None:
    """kafka_records leaves a batch it cannot parse exactly to aiokafka."""
    data = bytearray(_batch("plain", 0, [(b"k", b"value", [("h", b"x")])] * 3, [0, 1, 2]))
    if field == "count":
        struct.pack_into(">i", data, 57, 4)
    else:
        data[61] += 2  # the first record's length varint: two bytes longer
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    errors = []
    for records_class, topic in ((MemoryRecords, PLAIN), (FetchedBytes, LEAN)):
        with pytest.raises(CorruptRecordException) as info:
            _getall(records_class, topic, bytes(data), 0, 0, None)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


@needs_native
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_crc32c_is_kafkas(data: bytes) -> None:
    assert native.native is not None
    assert native.native.crc32c_of(data) == native.native.crc32c_of(data, True) == calc_crc32c(data)


def _outcome(records_class: Any, topic: str, data: bytes, check_crcs: bool) -> Any:
    try:
        recs, positions = _getall(records_class, topic, data, 0, 0, None, check_crcs)
    except CorruptRecordException as exc:
        # (the messages may differ: with a header cut short aiokafka's C batch reads
        # past its slice, into the next batch's bytes, where a fresh one stops at the end)
        return type(exc)
    return [(r.offset, r.key, r.value) for r in recs], positions


@needs_native
@pytest.mark.parametrize("length", [-100, -5, 0, 13, 14, 30, 48, 49])
@pytest.mark.parametrize("check_crcs", [True, False])
def test_a_batch_length_too_small_ends_as_in_aiokafka(length: int, check_crcs: bool) -> None:
    good = _batch("plain", 0, [(b"k", b"v", [])] * 3, [0, 1, 2])
    bad = bytearray(good)
    struct.pack_into(">i", bad, 8, length)
    data = good + bytes(bad) + good
    assert _outcome(FetchedBytes, LEAN, data, check_crcs) == _outcome(MemoryRecords, PLAIN, data, check_crcs)


@needs_native
def test_record_attributes_of_a_varint_s_length_are_left_to_aiokafka() -> None:
    data = bytearray(_batch("plain", 0, [(b"k", b"v", [])] * 2, [0, 1]))
    data[62] = 0x81  # the first record's attributes (after its one-byte length)
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    log = bytes(data)
    assert _outcome(FetchedBytes, LEAN, log, True) == _outcome(MemoryRecords, PLAIN, log, True)


@needs_native
@pytest.mark.parametrize("limit", [None, 1])
def test_a_partition_read_to_its_end_frees_its_bytes_without_the_collector(
        limit: int | None) -> None:
    """Once ``getall`` has read a partition to its end, its fetched bytes are freed by
    reference counting alone: a worker with the cyclic collector waiting (or quiet, far
    from its threshold) held a 10 MiB message's fetch for as long as it stayed quiet."""
    data, _ = _log([[(b"k", b"v" * 1000, [])] * 3], 5)
    tp = TopicPartition(LEAN, 0)
    assignment = _Assignment(5)
    part = PartitionRecords(tp, FetchedBytes(data), None, 5, None, None, True, 0)
    result = FetchResult(tp, assignment=assignment, partition_records=part, backoff=0)
    gone = weakref.ref(part)  # it holds the fetched bytes (FetchedBytes has no weakref)
    del part
    enabled = gc.isenabled()
    gc.disable()
    try:
        got: list[Any] = []
        while result.has_more():
            got += result.getall(limit)
        assert [r.offset for r in got] == [5, 6, 7]
        assert gone() is None
    finally:
        if enabled:
            gc.enable()

"""Patches of aiokafka internals (checked against the versions in ``versions.TESTED``).

``patch_leave_group_in_generation_zero`` applies only with the embedded broker
(``--broker-kind tansu``): with Kafka the patched condition never differs from
aiokafka's own. ``lean_records_for`` applies with every broker (the batch consumer's
topics, ``agents/worker/batching.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from agents.transport import versions

log = logging.getLogger("slawatch.transport")

_patched = False


def patch_leave_group_in_generation_zero() -> None:
    """Make aiokafka send LeaveGroup in generation 0 too (idempotent).

    Why: aiokafka leaves a consumer group on shutdown only when ``generation > 0``. Kafka
    numbers generations from 1, but tansu starts at 0, so a worker stopped in its
    group's first generation never sent LeaveGroup; the coordinator kept the dead member
    until its session timed out, and a worker restarted meanwhile joined as a follower
    of a leader that no longer existed: ~20 s to resume instead of ~7 s (measured).
    "No generation" is -1 in aiokafka, so ``>= 0`` is the faithful test.
    Upstream: none filed (a broker quirk, not an aiokafka bug).
    """
    global _patched
    if _patched:
        return
    versions.require("aiokafka", __name__)
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.group import LeaveGroupRequest

    async def _maybe_leave_group(self: Any) -> None:
        if self.generation >= 0 and self.member_id and self._group_instance_id is None:
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as err:
                log.warning("LeaveGroup request failed: %s", err)
            else:
                log.info("left consumer group %s", self.group_id)
        self.reset_generation()

    GroupCoordinator._maybe_leave_group = _maybe_leave_group
    _patched = True


#: Topics whose fetched records are handed on as ``LeanRecord`` (the batch topics of
#: ``agents/worker/batching.py``, registered by ``lean_records_for``).
LEAN_TOPICS: set[str] = set()


class LeanRecord(NamedTuple):
    """A fetched record of a batch topic: the fields of aiokafka's ``ConsumerRecord``
    that the worker reads (``headers`` a list of ``(key, value)`` pairs)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: Any


_lean_patched = False

#: ``streams._native.kafka_records`` statuses.
_DONE, _LIMIT, _AIOKAFKA, _BAD_CRC = 0, 1, 2, 3


class FetchedBytes:
    """aiokafka's ``MemoryRecords`` of a fetched partition, with the bytes kept.

    Installed as ``aiokafka.consumer.fetcher.MemoryRecords`` by ``lean_records_for``
    when the C extension is built: the C ``MemoryRecords`` does not expose its buffer,
    and ``kafka_records`` reads the batches from it. aiokafka's own unpacking (the
    topics that are not lean, and the batches ``kafka_records`` leaves to it) goes
    through the three methods below unchanged.
    """

    __slots__ = ("_records", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._records = _MemoryRecords(data)

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()  # type: ignore[no-any-return]

    def has_next(self) -> bool:
        return self._records.has_next()  # type: ignore[no-any-return]

    def next_batch(self) -> Any:
        return self._records.next_batch()


_MemoryRecords: Any = None


def lean_records_for(topics: Iterable[str]) -> None:
    """Have aiokafka hand on the records of ``topics`` as ``LeanRecord`` tuples.

    Why: aiokafka turns every fetched record into a ``ConsumerRecord`` (a dataclass of
    eleven fields, built in Python per record from the C record batch iterator, with
    sizes and a headers tuple nobody here reads): 1.4-1.9 us of a record's CPU, where
    walking the C iterator takes 0.1-0.3 and a tuple of the fields 0.3-0.5 more
    (measured in this process's setting, aiokafka 0.14). The batch path never gives these
    records to Faust, so the eight fields the worker reads are enough.

    With the C extension (``streams._native.kafka_records``) the fetched bytes are read
    straight into ``LeanRecord`` tuples, without aiokafka's record objects (its C
    iterator, six attribute reads and a tuple per record were still ~0.45 us of the
    worker's CPU per event, on Faust's consumer thread, which holds the GIL against the
    worker's loop), and ``FetchResult.getall`` without a record limit (Faust's default,
    the worker's setting) takes a partition's records in one call instead of one
    generator step each. It reads only uncompressed v2 batches that parse exactly;
    any other batch (another magic, compressed, malformed) is handed to aiokafka's own
    batch class, which reads it or raises its own error. Without the extension the
    records come from aiokafka's C iterator.

    Everything of aiokafka's unpacking is kept either way: the CRC check when
    ``check_crcs``, control batches skipped, records before the fetch offset skipped,
    ``next_fetch_offset`` after every record (``getall`` with a limit may stop in the
    middle of a batch) and after every batch. Only with ``read_uncommitted`` and no
    deserializers (the worker's consumer has neither); otherwise aiokafka's own
    unpacking runs. Upstream: none. Applied with every broker. Re-check on an aiokafka
    upgrade: ``PartitionRecords._unpack_records``, ``FetchResult.getall``, and the one
    use of ``MemoryRecords`` in ``Fetcher._proc_fetch_request``.
    """
    global _lean_patched, _MemoryRecords
    LEAN_TOPICS.update(topics)
    if _lean_patched:
        return
    versions.require("aiokafka", __name__)
    from aiokafka.consumer import fetcher
    from aiokafka.errors import CorruptRecordException

    from streams import native

    records_class = fetcher.PartitionRecords
    original = records_class._unpack_records
    original_getall = fetcher.FetchResult.getall
    read_committed = fetcher.READ_COMMITTED
    new = tuple.__new__
    # Off the cyclic collector's lists as they are made (a record holds only numbers,
    # bytes and a tuple of pairs of bytes: never in a cycle). A worker holds tens of
    # thousands of fetched records at a time, and every young collection walked them
    # (most of what it walked in a backlog) and moved them on to the older
    # generations, which walked them again.
    untrack: Any = native.native.untrack if native.native is not None else None
    walk: Any = native.native.kafka_records if native.native is not None else None

    def lean(self: Any) -> Iterator[LeanRecord]:
        tp = self._tp
        topic, partition = tp.topic, tp.partition
        records, check = self._records, self._check_crcs
        while records.has_next():
            batch = records.next_batch()
            if check and not batch.validate_crc():
                raise CorruptRecordException(f"Invalid CRC - {tp}")
            if not batch.is_control_batch:
                skip = self.next_fetch_offset
                for record in batch:
                    offset = record.offset
                    if offset < skip:
                        continue
                    self.next_fetch_offset = offset + 1
                    # ``or ()``: the C record's own empty list would be one more
                    # container per record for the collector (aiokafka makes a tuple)
                    rec = new(LeanRecord, (topic, partition, offset, record.timestamp,
                                          record.timestamp_type, record.key, record.value,
                                          record.headers or ()))
                    if untrack is not None:
                        untrack(rec)
                    yield rec
            self.next_fetch_offset = batch.next_offset

    def aiokafka_batch(self: Any, data: bytes, pos: int) -> tuple[list[LeanRecord], int, int]:
        """The batch at ``pos`` read by aiokafka (``kafka_records`` left it): its
        records, the next offset after it, and where the next batch starts."""
        length = int.from_bytes(data[pos + 8:pos + 12], "big", signed=True)
        if length < 14:  # what aiokafka's MemoryRecords raises for it
            raise CorruptRecordException(
                "Record size is less than the minimum record overhead (14)")
        end = pos + 12 + length
        batch = _MemoryRecords(data[pos:end]).next_batch()
        if self._check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {self._tp}")
        out: list[LeanRecord] = []
        if not batch.is_control_batch:
            topic, partition = self._tp.topic, self._tp.partition
            running = self.next_fetch_offset
            for record in batch:
                offset = record.offset
                if offset < running:
                    continue
                running = offset + 1
                rec = new(LeanRecord, (topic, partition, offset, record.timestamp,
                                      record.timestamp_type, record.key, record.value,
                                      record.headers or ()))
                untrack(rec)
                out.append(rec)
        return out, batch.next_offset, end

    def lean_native(self: Any) -> Iterator[LeanRecord]:
        """One batch at a time, for ``getone`` and ``getall`` with a limit."""
        self._lean_bulk = False  # the bulk path must not skip what this one holds
        tp = self._tp
        topic, partition = tp.topic, tp.partition
        data, check = self._records.data, self._check_crcs
        while True:
            out: list[LeanRecord] = []
            status, pos, nfo = walk(data, self._lean_pos, self.next_fetch_offset, check, 1,
                                    topic, partition, LeanRecord, out)
            if status == _DONE:
                self._lean_pos = pos
                return
            if status == _BAD_CRC:
                raise CorruptRecordException(f"Invalid CRC - {tp}")
            if status == _AIOKAFKA:
                out, nfo, pos = aiokafka_batch(self, data, pos)
            self._lean_pos = pos
            for rec in out:
                self.next_fetch_offset = rec[2] + 1
                yield rec
            self.next_fetch_offset = nfo

    def take_all(self: Any) -> list[LeanRecord]:
        """Every record left, the same as ``lean_native`` run to the end."""
        tp = self._tp
        topic, partition = tp.topic, tp.partition
        data, check = self._records.data, self._check_crcs
        out: list[LeanRecord] = []
        while True:
            status, pos, nfo = walk(data, self._lean_pos, self.next_fetch_offset, check, 0,
                                    topic, partition, LeanRecord, out)
            self._lean_pos, self.next_fetch_offset = pos, nfo
            if status == _DONE:
                return out
            if status == _BAD_CRC:
                # As aiokafka's iterator: closed by the error (records read before it
                # are lost with it, the position is after them: refetched from the
                # bad batch).
                self._lean_pos = len(data)
                raise CorruptRecordException(f"Invalid CRC - {tp}")
            try:
                more, nfo, self._lean_pos = aiokafka_batch(self, data, pos)
            except BaseException:
                self._lean_pos = len(data)
                raise
            out += more
            self.next_fetch_offset = nfo

    def _unpack_records(self: Any) -> Iterator[Any]:
        if (self._tp.topic in LEAN_TOPICS and self._isolation_level != read_committed
                and self._key_deserializer is None and self._value_deserializer is None):
            if walk is not None and type(self._records) is FetchedBytes and type(self._records.data) is bytes:
                self._lean_pos = 0
                self._lean_bulk = True
                return lean_native(self)
            return lean(self)
        return original(self)  # type: ignore[no-any-return]

    def getall(self: Any, max_records: int | None = None) -> list[Any]:
        part = self._partition_records
        if max_records is not None or part is None or not getattr(part, "_lean_bulk", False):
            return original_getall(self, max_records)  # type: ignore[no-any-return]
        if not self.check_assignment(self._topic_partition):
            return []
        try:
            records = take_all(part)
        finally:
            # aiokafka's getall leaves a partition whose iterator raised in place: the
            # next call finds it exhausted and moves the position.
            part._lean_bulk = part._lean_pos < len(part._records.data)
        self._update_position()
        self._partition_records = None
        # The unstarted generator aiokafka made (``_unpack_records``) holds the partition
        # and its fetched bytes in a cycle that only a full enough collection frees
        # (aiokafka drops it when the iterator ends; this path never starts it): a 10 MiB
        # message's fetch stayed in memory while the worker was quiet.
        part._records_iterator = None
        return records

    records_class._unpack_records = _unpack_records
    if walk is not None:
        _MemoryRecords = fetcher.MemoryRecords
        fetcher.MemoryRecords = FetchedBytes
        fetcher.FetchResult.getall = getall
    _lean_patched = True

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


def lean_records_for(topics: Iterable[str]) -> None:
    """Have aiokafka hand on the records of ``topics`` as ``LeanRecord`` tuples.

    Why: aiokafka turns every fetched record into a ``ConsumerRecord`` (a dataclass of
    eleven fields, built in Python per record from the C record batch iterator, with
    sizes and a headers tuple nobody here reads): 1.4-1.9 us of a record's CPU, where
    walking the C iterator takes 0.1-0.3 and a tuple of the fields 0.3-0.5 more
    (measured in this process's setting, aiokafka 0.14). The batch path never gives these
    records to Faust, so the eight fields the worker reads are enough. Everything else
    of aiokafka's unpacking is kept: the CRC check when ``check_crcs``, control
    batches skipped, records before the fetch offset skipped, ``next_fetch_offset``
    after every record (``getall`` may stop in the middle of a batch). Only with
    ``read_uncommitted`` and no deserializers (the worker's consumer has neither);
    otherwise aiokafka's own unpacking runs. Upstream: none. Applied with every broker.
    """
    global _lean_patched
    LEAN_TOPICS.update(topics)
    if _lean_patched:
        return
    versions.require("aiokafka", __name__)
    from aiokafka.consumer import fetcher
    from aiokafka.errors import CorruptRecordException

    from streams import native

    records_class = fetcher.PartitionRecords
    original = records_class._unpack_records
    read_committed = fetcher.READ_COMMITTED
    new = tuple.__new__
    # Off the cyclic collector's lists as they are made (a record holds only numbers,
    # bytes and a tuple of pairs of bytes: never in a cycle). A worker holds tens of
    # thousands of fetched records at a time, and every young collection walked them
    # (most of what it walked in a backlog) and moved them on to the older
    # generations, which walked them again.
    untrack = native.native.untrack if native.native is not None else None

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

    def _unpack_records(self: Any) -> Iterator[Any]:
        if (self._tp.topic in LEAN_TOPICS and self._isolation_level != read_committed
                and self._key_deserializer is None and self._value_deserializer is None):
            return lean(self)
        return original(self)  # type: ignore[no-any-return]

    records_class._unpack_records = _unpack_records
    _lean_patched = True

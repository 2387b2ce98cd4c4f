"""Exactly-once dead letters: what the DLQ already holds, and how far a checkpoint may
say it does.

Every rejection is sent to the DLQ when its record is first classified, before the
checkpoint that counts it. A worker that crashed after the send but before the
checkpoint leaves a DLQ record whose input record is delivered again, as a first
delivery, to the worker that takes the table partition over. That worker must not send
it again. So each DLQ record names its *origin* (input topic, partition, offset) and
the table partition that rejected it (headers), and:

* every checkpoint writes, with a table partition's counters (``PartitionStats``), a
  *DLQ mark*: an offset of its DLQ partition before which every record that table
  partition dead-lettered has its origin covered by the counters' origin marks (counted:
  a redelivery of it is not a first delivery, so it is not dead-lettered again);
* a worker taking partitions over reads their DLQ partitions from the lowest of their
  marks to the end before it classifies anything, and never sends a rejection whose
  origin it found there (``seen``).

The mark is not "where the DLQ ended when the counters were written": the DLQ records of
one table partition come from several logs (its input partition, the re-route
partition) whose batches interleave differently in every run, and several table
partitions may share a DLQ partition (a DLQ topic with fewer partitions). A successor
can send new rejections after a predecessor's uncounted ones before it reaches those
again; a mark past them would hide them from the next successor. So while a record found
at assignment has an origin the counters do not cover yet, its table partition's mark
stays where it was (``mark``). Marks are therefore always ends of record batches, which
the read at assignment relies on (tansu reports the start of the last batch + 1 as a
partition's end).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.worker import routing

#: Header on DLQ records: the table partition that dead-lettered it (UTF-8 digits).
H_TABLE_PARTITION = "slawatch-table-partition"

#: Longest a worker reads the DLQ for what a crashed predecessor sent (seconds).
SCAN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Found:
    """A DLQ record read at assignment: its origin, its DLQ offset, and the table
    partition that sent it (None: a record written before that header existed)."""

    origin: routing.Origin
    offset: int
    table_partition: int | None


@dataclass
class Scan:
    """What ``scan`` read: per DLQ partition, its records from the start mark, and the
    offset the reading reached (every record before it was read or before the start)."""

    found: dict[int, list[Found]] = field(default_factory=dict)
    reached: dict[int, int] = field(default_factory=dict)


def covered(marks: dict[str, int], origin: routing.Origin) -> bool:
    """Whether counters with these origin marks counted ``origin`` already."""
    topic, part, offset = origin
    return marks.get(routing.mark_key(topic, part), -1) >= offset


class Ledger:
    """The DLQ bookkeeping of one worker's assignment (reset on every assignment)."""

    def __init__(self, dlq_partitions: int) -> None:
        self.dlq_partitions = dlq_partitions
        #: Per DLQ partition: the offset after the last record this worker delivered.
        self.own_end: dict[int, int] = {}
        #: Per DLQ partition: how far ``scan`` read at assignment.
        self.reached: dict[int, int] = {}
        #: Per DLQ partition: origins of every record found there (never sent again).
        self.sent: dict[int, set[routing.Origin]] = {}
        #: Per owned table partition: origins of found records of it not yet counted
        #: there (they hold its mark back).
        self.pending: dict[int, set[routing.Origin]] = {}

    def dlq_partition(self, q: int) -> int:
        return q % self.dlq_partitions

    def starts(self, owned: Iterable[int], mark_of: Any) -> dict[int, int]:
        """Per DLQ partition of the ``owned`` table partitions, where to start reading:
        the lowest of their marks (``mark_of(q)``: the restored mark, 0 if none)."""
        out: dict[int, int] = {}
        for q in owned:
            k = self.dlq_partition(q)
            mark = mark_of(q)
            out[k] = min(out.get(k, mark), mark)
        return out

    def adopt(self, scan: Scan, owned: Iterable[int]) -> int:
        """Take what ``scan`` found for the ``owned`` table partitions; how many."""
        owned = sorted(owned)
        self.reached = dict(scan.reached)
        self.sent = {k: {f.origin for f in recs} for k, recs in scan.found.items()}
        self.pending = {q: set() for q in owned}
        for k, recs in scan.found.items():
            for f in recs:
                if f.table_partition is not None:
                    targets = [f.table_partition] if f.table_partition in self.pending else []
                else:  # older record: any owned table partition of this DLQ partition
                    targets = [q for q in owned if self.dlq_partition(q) == k]
                for q in targets:
                    self.pending[q].add(f.origin)
        return sum(len(recs) for recs in scan.found.values())

    def seen(self, q: int, origin: routing.Origin) -> bool:
        """Whether a DLQ record for ``origin`` exists already (a predecessor sent it)."""
        return origin in self.sent.get(self.dlq_partition(q), ())

    def delivered(self, k: int, offset: int) -> None:
        """This worker's DLQ record at ``offset`` of DLQ partition ``k`` is on the broker."""
        if offset + 1 > self.own_end.get(k, 0):
            self.own_end[k] = offset + 1

    def mark(self, q: int, current: int, marks: dict[str, int]) -> int:
        """The DLQ mark of table partition ``q`` for counters with origin ``marks``
        (``current``: the mark they hold now). Call with every record this worker
        dead-lettered for ``q`` delivered and counted in ``marks``.

        Every record of ``q`` before the result is counted: before ``current`` by the
        counters' own claim; up to ``reached``, records found at assignment, once none
        of them is pending; after that only this worker's own, all counted.
        """
        pending = self.pending.get(q)
        if pending is None:
            return current  # not read at assignment: nothing known past its mark
        if pending:
            pending.difference_update([o for o in pending if covered(marks, o)])
            if pending:
                return current
        k = self.dlq_partition(q)
        return max(current, self.reached.get(k, 0), self.own_end.get(k, 0))


async def scan(app: Any, topic: str, starts: dict[int, int]) -> Scan:
    """Per partition ``k`` of the DLQ ``topic``, its records from offset ``starts[k]``
    to the end (read with a consumer of its own, outside the group)."""
    import aiokafka
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list

    conf = app.conf
    transport = app.transport
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=server_list(transport.url, transport.default_port),
        group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))
    out = Scan(reached=dict(starts))
    await consumer.start()
    try:
        tps = [aiokafka.TopicPartition(topic, k) for k in starts]
        ends = {tp: int(off or 0) for tp, off in (await consumer.end_offsets(tps)).items()}
        # tansu reports the start of the last batch + 1 as the end: anything past the
        # mark shows as an end past it. Read at least to that end, then until a fetch
        # comes back empty (an empty answer before that is only a fetch still waiting).
        todo = [tp for tp in tps if ends.get(tp, 0) > starts[tp.partition]]
        if not todo:
            return out
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, starts[tp.partition])
        deadline = time.monotonic() + SCAN_TIMEOUT
        while True:
            got = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, recs in got.items():
                found = out.found.setdefault(tp.partition, [])
                for rec in recs:
                    found.append(Found(routing.origin_of(rec), rec.offset,
                                       table_partition_of(rec)))
            if not any(got.values()):
                positions = [await consumer.position(tp) for tp in todo]
                if all(pos >= ends[tp] for pos, tp in zip(positions, todo, strict=True)):
                    for pos, tp in zip(positions, todo, strict=True):
                        out.reached[tp.partition] = pos
                    break
            if time.monotonic() > deadline:
                # Never silently: a rejection of the predecessor may be sent again.
                raise TimeoutError(f"reading {topic} from the checkpoint's marks {starts} "
                                   f"to {ends} took over {SCAN_TIMEOUT:.0f} s")
    finally:
        await consumer.stop()
    return out


def table_partition_of(rec: Any) -> int | None:
    for k, v in rec.headers or ():
        if k == H_TABLE_PARTITION:
            try:
                return int(bytes(v))
            except ValueError:
                return None
    return None

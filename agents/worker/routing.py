"""Where stage 1 classifies an input record, and how it knows it counted one already.

The input topic belongs to the monitoring side: any partition count (which may grow),
any partitioner, created by anyone. The worker's own state is partitioned by its
settings: component ``c`` lives in partition ``q = murmur2(c) mod --partitions`` of the
re-route topic, of the components table and of its changelog, and only the worker that
owns ``q`` may classify, count and dead-letter an event of ``c``.

Faust gives one worker the same partition numbers of all the topics of one
*co-partitioned group* (topics with the same partition count), but it may also give a
worker table partitions of components whose events it reads in input partitions of
another count (one worker owns every partition). So an input record of component ``c``
is classified **where it is read** whenever this worker owns ``q`` and may classify
there (below), whatever the input partition; otherwise it is **forwarded**, unparsed,
to re-route partition ``q`` (a record that is not an event: to ``p`` mod the count,
where a co-partitioned input partition ``p`` is classified too), and the owner of
``q`` classifies it there. With one worker nothing is forwarded; with ``n`` workers
about ``(n - 1) / n`` of the input is.

Every counted record is identified by its *origin*: the input topic, partition and
offset (a forwarded record carries them in headers), and is always classified in the
same table partition whichever way its input partition is read. Per table partition ``q``, the
partition's counters (``PartitionStats``) keep, per origin partition, the highest offset
counted: records from one origin partition reach ``q`` in offset order (one producer
forwards them in order; a revoke waits for its sends), so a record at or below that
mark was counted before, whether it arrives again because a crash redelivered the input
or because a forwarder sent it twice. That mark is written by the same checkpoint as
the counters and the trackers, so it never claims what they do not hold.

Switching table partition ``q`` from forwarded to classified where read (every
assignment starts forwarding) must not let an input record overtake a forwarded one of
the same origin: input records are classified in ``q`` only once the re-route partition
``q`` was read to the end it had when the partition was assigned (everyone's forwards
before the rebalance) and past every forward to ``q`` this worker sent since, and none
is in flight; from then on this worker forwards nothing to ``q`` until the next
assignment. A redelivered record of a co-partitioned input partition ``p`` whose
component lives in ``q`` is judged by ``q``'s marks, not ``p``'s: classified in ``q``, its
first delivery was written to ``q``'s state and ``p``'s mark by one checkpoint, but to two
changelog partitions, and a crash may keep one without the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Headers naming a record's origin, on forwarded records and on DLQ records (UTF-8).
H_TOPIC = "slawatch-source-topic"
H_PARTITION = "slawatch-source-partition"
H_OFFSET = "slawatch-source-offset"

Origin = tuple[str, int, int]  # topic, partition, offset


def origin_headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [(H_TOPIC, topic.encode()), (H_PARTITION, str(partition).encode()),
            (H_OFFSET, str(offset).encode())]


def origin_of(rec: Any) -> Origin:
    """The input record a consumed record stands for: its own place, unless it was
    forwarded (then the headers say where it came from)."""
    headers = rec.headers
    if headers:
        topic = part = off = None
        for k, v in headers:
            if k == H_TOPIC:
                topic = v
            elif k == H_PARTITION:
                part = v
            elif k == H_OFFSET:
                off = v
        if topic is not None and part is not None and off is not None:
            try:
                return bytes(topic).decode(), int(part), int(off)
            except (UnicodeDecodeError, ValueError):
                pass
    return rec.topic, rec.partition, rec.offset


def mark_key(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def first_times(marks: dict[str, int], origins: Sequence[Origin]) -> list[bool] | None:
    """Advance the per-origin marks over ``origins`` (in arrival order); per record
    whether it is counted for the first time, or None when all are."""
    out: list[bool] | None = None
    for i, (topic, part, off) in enumerate(origins):
        key = mark_key(topic, part)
        last = marks.get(key, -1)
        if off > last:
            marks[key] = off
        else:
            if out is None:
                out = [True] * len(origins)
            out[i] = False
    return out


def first_times_run(marks: dict[str, int], topic: str, partition: int,
                    records: Sequence[Any]) -> list[bool] | None:
    """``first_times`` for consecutive records of one partition (the local path)."""
    key = mark_key(topic, partition)
    last = marks.get(key, -1)
    lo, hi = records[0].offset, records[-1].offset
    if lo > last:
        marks[key] = hi
        return None
    marks[key] = max(last, hi)
    return [rec.offset > last for rec in records]

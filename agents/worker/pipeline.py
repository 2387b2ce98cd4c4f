"""The two stages of the worker: component events -> component trackers -> service trackers.

Stage 1 consumes ``component-events`` (and the internal re-route topic), classifies
every message with the engine's ``ComponentTracker`` and forwards the ``Segment`` of
each change to every service that depends on the component, on the segments topic
in the service's partition (explicitly partitioned, several services a message). Stage 2
applies the segments to the service's ``ServiceTracker``.

Both are batch handlers of ``batching.BatchConsumer``: they get every record Faust
fetched for one partition at once, and per batch each changed tracker is serialized and
written to its table once, and the segments of a fetch travel as one message per
segments partition (``segwire.encode_many``), so the per-event cost is the engine's
work. A handler returns the futures of its writes;
the consumer commits the batch's offsets only once they all succeeded.

Bad input never stops the worker: a message that cannot be decoded, and an event that
is too late to apply, go to the DLQ with the reason and their origin in headers.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from operator import attrgetter
from time import perf_counter
from typing import Any

from agents.transport.aiokafka_patches import LeanRecord
from agents.worker import alignment, deadletters, faults, routing, segwire
from agents.worker.rollups import RollupKeeper
from agents.worker.runtime import Runtime
from agents.worker.state import PartitionStats, TrackerTable, stats_key
from streams import stage1, stage2
from streams.batch import WireSegment
from streams.catalog import Catalog
from streams.component import ComponentTracker
from streams.service import ServiceTracker
from streams.stage1 import Decoded

log = logging.getLogger("slawatch.pipeline")
_value = attrgetter("value")

#: Header names on DLQ records (values are UTF-8): the reason, and the input record's
#: topic, partition and offset (also of a message the worker forwarded first).
H_REASON = "slawatch-reason"
H_TOPIC = routing.H_TOPIC
H_PARTITION = routing.H_PARTITION
H_OFFSET = routing.H_OFFSET
#: Set (to the original size in bytes) when a DLQ record carries only the message's head.
H_TRUNCATED = "slawatch-truncated"
#: Room left under the producer's max request size for headers and batch overhead.
DLQ_HEADROOM = 64 * 1024

#: Longest stretch (s) a batch handler runs without letting other tasks run.
YIELD_EVERY = 0.02
#: Records of one partition decoded and applied at a time (between yields).
SLICE = 2048
#: Segments of a fetch's services applied at a time by stage 2 (between yields), or
#: services, whichever comes first.
STAGE2_SEGMENTS = 4096
STAGE2_SERVICES = 256


def stage2_slices(items: list[tuple[str, segwire.Columns]]) -> Iterator[list[tuple[str, segwire.Columns]]]:
    """``items`` (a fetch's services with their segments) in consecutive slices of at
    most ``STAGE2_SERVICES`` services, cut after the service that brings a slice to
    ``STAGE2_SEGMENTS`` segments: stage 2 applies a slice in one call."""
    lo = 0
    n = len(items)
    while lo < n:
        hi = lo
        count = 0
        top = min(n, lo + STAGE2_SERVICES)
        while hi < top and count < STAGE2_SEGMENTS:
            count += len(items[hi][1].comps)
            hi += 1
        yield items[lo:hi]
        lo = hi


def apply_stage2_slice(services: TrackerTable[ServiceTracker],
                       chunk: list[tuple[str, segwire.Columns]], part_of: Mapping[str, int],
                       catalog: Catalog) -> set[str]:
    """Stage 2 on one slice of a fetch's services (``stage2_slices``): their trackers got
    from the table, ``stage2.apply_all``, each changed one marked in the segments
    partition it came on (``part_of``) and each new one stored. Returns the services that
    left the catalog since their segments were sent: nothing applied, nothing stored."""
    trackers = services.get_many([name for name, _ in chunk])
    done = stage2.apply_all(chunk, trackers, catalog)
    gone = set(done.gone)
    services.touch_each({name: part_of[name] for name, _ in chunk if name not in gone})
    for name in done.created:
        services.put(name, trackers[name], part_of[name])
    return gone

#: Seconds between table writes of each stage. A service tracker holds its whole
#: history (up to the SLA period), so in an alert storm writing it dominates stage 2;
#: after a crash stage 2 replays at most this much of the segments topic.
COMPONENTS_CHECKPOINT = 0.5
SERVICES_CHECKPOINT = 2.0

#: Prune a tracker's history at most this often (seconds) when it is written anyway.
PRUNE_EVERY = 300.0
#: A component tracker first written since the start with fewer points than this is
#: first pruned PRUNE_EVERY later, not at once: after a start every tracker is due,
#: and in a storm waiting at the start that prune (compacting a few points each) was
#: most of the first components checkpoint. Such a tracker's columns are ~200 B at
#: most (100,000 of them: ~20 MB for PRUNE_EVERY, at worst); one that has grown (a
#: worker recovering history, or restarting more often than PRUNE_EVERY) is pruned
#: at once.
FIRST_PRUNE_POINTS = 16
#: The longest a services checkpoint holds its day rollups (in all) for the /metrics
#: responses being written (``Runtime.scrapes_writing``), and how often it looks.
SCRAPE_HOLD_MAX = 2.0
SCRAPE_POLL = 0.02
#: Stage 1 batches of fewer input records than this (live traffic, not a backlog) have
#: their segment messages applied by this worker's stage 2 as soon as they are on the
#: broker (``Pipeline._apply_own``), where it owns their partition. In a backlog stage
#: 2 applies them as fetched, several stage-1 batches' segments of a service merged
#: into one time-ordered pass (``stage2``) rather than one pass per batch.
OWN_MAX_RECORDS = alignment.MIN_RECORDS
#: Services whose day rollups a checkpoint updates between two turns of the event loop
#: (~20 ms; after a backlog at 10,000 services the whole update is ~1 s).
ROLLUP_SLICE = 200

#: ``producer.send(topic, key, value, partition, timestamp, headers)`` of Faust's
#: aiokafka producer: awaits room in the accumulator, returns the delivery future.
ProducerSend = Callable[..., Awaitable[Any]]


class RateLimitedLog:
    """At most ``burst`` lines per ``interval``; the rest are counted and summarised.

    A producer gone wrong can send thousands of bad messages a second; every one is in
    the DLQ, the log only has to say that it is happening and where.
    """

    def __init__(self, logger: logging.Logger, burst: int = 20, interval: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self._window_start = 0.0
        self._lines = 0
        self._suppressed = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window_start >= self.interval:
            if self._suppressed:
                self.logger.warning("... and %d more rejected messages (see the DLQ)",
                                    self._suppressed)
            self._window_start = now
            self._lines = 0
            self._suppressed = 0
        if self._lines < self.burst:
            self._lines += 1
            self.logger.warning(msg, *args)
        else:
            self._suppressed += 1


class Pipeline:
    """The batch logic of both stages, bound to one worker's runtime and topics."""

    def __init__(self, rt: Runtime, topics: Any, send: ProducerSend) -> None:
        self.rt = rt
        self.topics = topics
        self._producer_send = send
        #: The aiokafka producer underneath (for record batches), when there is one.
        self.raw_producer: Callable[[], Any] | None = None
        self.dlq_log = RateLimitedLog(log)
        self.segment_log = RateLimitedLog(log)
        self._pruned: dict[str, float] = {}
        #: Day-rollup writes not known delivered: a checkpoint that prunes waits for
        #: these too, since checkpoints overlap (the next may start before the last's
        #: writes are acknowledged) and a pruned tracker cannot redo a lost one.
        self._rollups_unacked: list[Any] = []
        # Routing (agents/routing.py), set again by ``after_seek`` on every assignment.
        self._copartitioned = False
        self._direct_ok: set[int] = set()
        self._reroute_end: dict[int, int] = {}
        self._fwd_inflight: dict[int, int] = {}
        self._fwd_end: dict[int, int] = {}
        #: What the DLQ holds of the owned partitions (``agents/worker/deadletters.py``),
        #: new on every assignment.
        self.dlq = deadletters.Ledger(rt.settings.partitions)
        self._dlq_topic = topics.dlq.get_topic_name()
        self._reroute_topic = topics.reroute.get_topic_name()
        self._segments_topic = topics.segments.get_topic_name()
        self._segments_single = rt.settings.segments_format == "single"
        self._max_request = int(topics.dlq.app.conf.producer_max_request_size)
        #: Per segments partition: the offset after the last segment record delivered.
        #: Stage 2 has caught up with stage 1 when its position reaches it.
        self.segments_end: dict[int, int] = {}
        self._yield_at = 0.0
        self.rollups: RollupKeeper | None = None  # set by the app (agents/worker/rollups.py)

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, headers: list[tuple[str, bytes]] | None = None) -> Any:
        return await self._producer_send(topic, key, value, partition, None, headers)

    # -- stage 1 -------------------------------------------------------------------

    async def stage1(self, batch: dict[Any, Sequence[Any]]) -> list[Any]:
        """Classify and apply a fetch's component events, all partitions at once.

        One call for the whole fetch, so each service gets its segments of every
        partition together (in one message of its segments partition), which stage 2
        merges into time order. In a
        large fetch, what a partition ran ahead of the others in event time was held
        back for a later batch by the consumer (``alignment.Aligner``).
        An input record is classified here when this worker owns its component's table
        partition (``_direct``), whatever input partition it came from; any other is
        forwarded to the re-route topic (``agents/routing.py``).
        Returns the futures of what it sent (DLQ and re-route records, then segments);
        the changed trackers and counters are written by ``checkpoint_components``.
        """
        rt = self.rt
        now = time.time()
        reroute = self._reroute_topic
        #: per table partition, decided once per call (see ``_direct``)
        ok: dict[int, bool] = {}

        def direct(q: int) -> bool:
            d = ok.get(q)
            if d is None:
                d = ok[q] = self._direct(q)
            return d

        local = {tp: self._copartitioned and direct(tp.partition)
                 for tp in batch if tp.topic != reroute}
        fanout: dict[str, list[WireSegment]] = {}
        out: list[tuple[str, bytes | None, bytes | None, int | None, Any]] = []
        forwards: dict[int, list[tuple[bytes | None, bytes | None, Any]]] = {}
        #: input records classified here in another table partition than their own
        here: dict[int, list[Any]] = {}
        #: (record, table partition) of a local partition's records of other partitions
        spill: list[tuple[Any, int]] = []
        #: input partitions not co-partitioned with the tables (read after the others)
        spread: list[tuple[Any, Sequence[Any]]] = []
        n = 0
        for tp, records in batch.items():
            p = tp.partition
            topic = tp.topic
            n += len(records)
            if topic == reroute:
                await self._classify(records, p, [routing.origin_of(r) for r in records],
                                     now, fanout, out, spill)
            elif local[tp]:
                await self._classify(records, p, None, now, fanout, out, spill)
            else:
                spread.append((tp, records))
        headers = routing.origin_headers

        def forward(rec: Any, q: int) -> None:
            rt.counters.rerouted += 1
            items = forwards.get(q)
            if items is None:
                items = forwards[q] = []
            items.append((rec.key, rec.value, headers(rec.topic, rec.partition, rec.offset)))

        for rec, q in spill:
            if direct(q):
                here.setdefault(q, []).append(rec)
            else:
                forward(rec, q)
        nparts = rt.settings.partitions
        for tp, records in spread:
            # Decoded once and classified per table partition (its component's), a
            # slice at a time; the records of a partition not classified here are
            # forwarded. A record without a component (invalid) goes to ``p mod
            # --partitions``, where a co-partitioned input partition ``p`` has it
            # classified too, so its origin mark there covers it.
            for lo in range(0, len(records), SLICE):
                chunk = records[lo:lo + SLICE]
                groups = stage1.split(list(map(_value, chunk)), now,
                                      rt.component_partition.many, tp.partition % nparts)
                for q, (positions, decoded) in groups.items():
                    if direct(q):
                        await self._classify_spread(tp, list(map(chunk.__getitem__, positions)),
                                                    decoded, q, now, fanout, out)
                    else:
                        for i in positions:
                            forward(chunk[i], q)
        for q, records in here.items():
            await self._classify(records, q, [(r.topic, r.partition, r.offset) for r in records],
                                 now, fanout, out, None)
        send = self.send
        futures = []
        for t, k, v, part, h in out:
            assert part is not None
            fut = await send(t, k, v, part, h)
            futures.append(fut)
            if t == self._dlq_topic:
                fut.add_done_callback(self._dlq_delivered)
        for q, items in forwards.items():
            futures += await self._send_forwards(q, items)
        seg_topic = self._segments_topic
        last_seg: dict[int, Any] = {}
        own = self._apply_own if n < OWN_MAX_RECORDS else None
        for sp, key, value in segwire.messages(fanout, rt.service_partition,
                                               self._segments_single):
            fut = last_seg[sp] = await send(seg_topic, key, value, sp)
            futures.append(fut)
            if own is not None:
                fut.add_done_callback(functools.partial(own, key, value))
        for fut in last_seg.values():
            fut.add_done_callback(self._segment_delivered)
        rt.counters.batches += 1
        rt.counters.events += n
        faults.point("fetch")
        return futures

    def _partition_stats(self, q: int) -> tuple[str, PartitionStats]:
        """Table partition ``q``'s counters and marks (new ones if it has none yet),
        under their key."""
        key = stats_key(q)
        stats = self.rt.stats.get(key)
        if stats is None:
            stats = PartitionStats()
        stats.adopt_legacy_marks(q)
        return key, stats

    async def _classify(self, records: Sequence[Any], q: int,
                        origins: list[routing.Origin] | None, now: float,
                        fanout: dict[str, list[WireSegment]], out: list[Any],
                        spill: list[tuple[Any, int]] | None) -> None:
        """Stage 1 on records classified in table partition ``q``: its counters and
        marks, then ``_events`` a slice at a time. ``origins``: the input record each
        stands for (None: records of input partition ``q`` read where they are, whose
        events of another partition's components go to ``spill``)."""
        rt = self.rt
        key, stats = self._partition_stats(q)
        # Redelivered, or forwarded twice (counted already): classify again, count
        # nothing.
        if origins is not None:
            firsts = routing.first_times(stats.marks, origins)
        else:
            firsts = routing.first_times_run(stats.marks, records[0].topic, q, records)
        if firsts is not None:
            rt.counters.rewound += 1
        for lo in range(0, len(records), SLICE):
            self._events(records[lo:lo + SLICE], firsts and firsts[lo:lo + SLICE],
                         origins and origins[lo:lo + SLICE], q, now, stats, fanout, out, spill)
            if perf_counter() >= self._yield_at:
                await self._yield()
        rt.stats.put(key, stats, q)

    async def _classify_spread(self, tp: Any, records: Sequence[Any], decoded: Decoded,
                               q: int, now: float, fanout: dict[str, list[WireSegment]],
                               out: list[Any]) -> None:
        """Stage 1 on records of input partition ``tp`` (not co-partitioned with the
        tables) whose components live in table partition ``q``, in offset order, as
        ``stage1.split`` decoded them: their origin is where they are read, so the marks
        of ``tp`` in ``q`` judge them as one run."""
        rt = self.rt
        key, stats = self._partition_stats(q)
        firsts = routing.first_times_run(stats.marks, tp.topic, tp.partition, records)
        if firsts is not None:
            rt.counters.rewound += 1
        self._events(records, firsts, None, q, now, stats, fanout, out, None, decoded)
        rt.stats.put(key, stats, q)
        if perf_counter() >= self._yield_at:
            await self._yield()

    async def _send_forwards(self, q: int, items: list[tuple[bytes | None, bytes | None, Any]]
                             ) -> list[Any]:
        """Send forwarded records to re-route partition ``q`` in order; the futures."""
        futures: list[Any] = []
        for fut, count in await self._send_batches(self._reroute_topic, q, items):
            self._forward_sent(q, fut, count)
            futures.append(fut)
        return futures

    async def send_many(self, topic: str, partition: int,
                        records: list[tuple[bytes, bytes | None]]) -> list[tuple[Any, int]]:
        """``state.SendMany``: a changelog partition's records as record batches, what
        the checkpoints send (``_many``). One ``send`` per record cost ~20 us of the
        producer's Python per record: at 20,000 components, where every checkpoint
        writes nearly every tracker, 31 against 13 us per tracker written in one
        process (bench/checkpoint.py). A cheaper checkpoint is also made more often
        where the last one's cost spaces them (``batching.COST_FACTOR``)."""
        return await self._send_batches(topic, partition,
                                        [(key, value, None) for key, value in records])

    async def _send_batches(self, topic: str, q: int,
                            items: list[tuple[bytes | None, bytes | None, Any]]
                            ) -> list[tuple[Any, int]]:
        """Send ``(key, value, headers)`` records to partition ``q`` of ``topic`` in
        order; ``(future, count)`` per run of ``count`` records delivered together.

        In record batches built here (aiokafka's ``send_batch``): one ``send`` per
        record costs ~20 us in the producer (a future and its metadata per record).
        The accumulator keeps a partition's batches in the order they are added,
        whichever path added them, so the log keeps this order.
        """
        raw = self.raw_producer() if self.raw_producer is not None else None
        out: list[tuple[Any, int]] = []
        if raw is None:
            for key, value, headers in items:
                out.append((await self.send(topic, key, value, q, headers), 1))
            return out
        i = 0
        while i < len(items):
            batch = raw.create_batch()
            start = i
            while i < len(items):
                key, value, headers = items[i]
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    break
                i += 1
            if i == start:  # one record larger than a batch: the producer's own path
                key, value, headers = items[i]
                out.append((await self.send(topic, key, value, q, headers), 1))
                i += 1
                continue
            batch.close()
            out.append((await raw.send_batch(batch, topic, partition=q), i - start))
        return out

    def _forward_sent(self, q: int, fut: Any, count: int) -> None:
        """A forward to re-route partition ``q`` is in flight: nothing is classified
        in table partition ``q`` from the input until it is read back."""
        self._fwd_inflight[q] = self._fwd_inflight.get(q, 0) + 1

        def done(f: Any) -> None:
            self._fwd_inflight[q] = self._fwd_inflight.get(q, 1) - 1
            if f.cancelled() or f.exception() is not None:
                return
            end = f.result().offset + count
            self._fwd_end[q] = max(self._fwd_end.get(q, 0), end)

        fut.add_done_callback(done)

    @property
    def forwarded_end(self) -> dict[int, int]:
        """Per re-route partition, the offset after this worker's last delivered forward
        there (since its last assignment)."""
        return dict(self._fwd_end)

    def _direct(self, q: int) -> bool:
        """Whether input records of table partition ``q`` are classified here, where
        they are read, from any input partition (``agents/routing.py``): this worker
        owns ``q``, and nothing forwarded to re-route partition ``q`` before (by this
        worker, or by anyone before this assignment) is still ahead of this worker's
        position there, so no input record overtakes a forwarded one of its origin.
        Once true it stays so until the next assignment: from then on this worker
        forwards nothing to ``q``."""
        if q in self._direct_ok:
            return True
        if self._fwd_inflight.get(q):
            return False
        consumer = self.rt.app.consumer
        pos = consumer.next_offset(self._reroute_tp(q))
        end = max(self._reroute_end.get(q, 0), self._fwd_end.get(q, 0))
        if pos is None or pos < end:
            return False
        self._direct_ok.add(q)
        return True

    def _reroute_tp(self, p: int) -> Any:
        from faust.types import TP

        return TP(self._reroute_topic, p)

    def _dlq_delivered(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        md = fut.result()
        self.dlq.delivered(md.partition, md.offset)

    async def _yield(self) -> None:
        """Let the web server and the consumer's callbacks run during a long batch.

        A fetch can hold tens of thousands of records; without this, a scrape would wait
        for the whole batch. Readers may see a batch half applied, which is just a more
        recent state; nothing is written or committed until the batch ends.
        """
        await asyncio.sleep(0)
        self._yield_at = perf_counter() + YIELD_EVERY

    def _apply_own(self, key: bytes | None, value: bytes, fut: Any) -> None:
        """A segment message this worker sent is on the broker: stage 2 of this worker
        applies it now if it owns that segments partition and has applied everything
        before it there (``BatchConsumer.apply_own``), one broker round trip before its
        fetch would bring it."""
        if fut.cancelled() or fut.exception() is not None:
            return
        md = fut.result()
        apply = getattr(self.rt.app.consumer, "apply_own", None)
        if apply is not None:
            apply(LeanRecord(self._segments_topic, md.partition, md.offset,
                             md.timestamp, 0, key, value, []))

    def _segment_delivered(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        md = fut.result()
        end = self.segments_end
        end[md.partition] = max(end.get(md.partition, 0), md.offset + 1)

    def _events(self, records: Sequence[Any], firsts: list[bool] | None,
                origins: list[routing.Origin] | None, p: int, now: float,
                stats: PartitionStats, fanout: dict[str, list[WireSegment]],
                out: list[Any], spill: list[tuple[Any, int]] | None,
                decoded: Decoded | None = None) -> None:
        """Stage 1 on consecutive records of table partition ``p``: the domain decides
        (``stage1.classify``), this sends and stores what it decided.

        ``firsts[i]`` tells whether record ``i`` is delivered for the first time (None:
        all are). ``origins``: the input record each stands for (None: the input
        records themselves). With ``origins`` None and a ``spill``, they are the
        records of input partition ``p``, co-partitioned with the tables, whose events
        of another partition's components go to ``spill`` with that partition: the
        first deliveries, and redeliveries too, which the other partition's marks judge
        (``stage1``'s ``away_again``); without ``spill`` every event is of ``p``'s
        (``stage1.split``). ``decoded``: the records as ``stage1.split`` decoded them.
        """
        rt = self.rt
        part = rt.component_partition
        done = stage1.classify(
            list(map(_value, records)), firsts, now,
            lookup=rt.components.get, catalog=rt.catalog,
            # every tracker stage 1 gets is marked changed as it is got
            lookup_many=functools.partial(rt.components.get_many, touch=p),
            allowed_lateness=rt.settings.allowed_lateness, fanout=fanout,
            unmapped=stats.unmapped,
            elsewhere=((lambda cs: part.others(cs, p)) if origins is None and spill is not None
                       else None),
            decoded=decoded)
        if spill is not None:
            # In offset order: a redelivery's event applied after a later one of its
            # component could be late behind it, and then not applied again
            away = sorted(done.away + done.away_again) if done.away_again else done.away
            for i, c in away:
                spill.append((records[i], part(c)))
        table = rt.components
        trackers = done.trackers  # every one got was marked changed (``touch``) by then
        for c in done.created:
            table.put(c, trackers[c], p)
        for i, error in done.errors:
            # An engine bug must not stop the pipeline: the message is counted invalid
            # and dead-lettered with the error (``classify``); the log has the trace.
            rec = records[i]
            log.error("internal error on %s[%d]@%d", rec.topic, p, rec.offset, exc_info=error)
        for i, reason in done.dead_letters:
            self._dead_letter(records[i], None if origins is None else origins[i], p, reason, out)
        counts = stats.counts
        for outcome, n in done.counts.items():
            counts[outcome] = counts.get(outcome, 0) + n

    def _dead_letter(self, rec: Any, origin: routing.Origin | None, p: int, reason: str,
                     out: list[Any]) -> None:
        """Send ``rec`` to the DLQ partition of table partition ``p``, naming the input
        record it stands for and ``p``, unless a predecessor that crashed before its
        checkpoint sent it already (``after_seek`` read those)."""
        topic, part, offset = origin or (rec.topic, rec.partition, rec.offset)
        if self.dlq.seen(p, (topic, part, offset)):
            return
        self.dlq_log.warning(
            "rejected message %s[%d]@%d: %s", topic, part, offset, reason
        )
        headers = [(H_REASON, reason.encode()), *routing.origin_headers(topic, part, offset),
                   (deadletters.H_TABLE_PARTITION, str(p).encode())]
        key, value = rec.key, rec.value
        size = len(key or b"") + len(value or b"")
        limit = max(DLQ_HEADROOM, self._max_request - DLQ_HEADROOM)
        if size > limit:
            # A message larger than the producer may send would crash the worker on
            # every restart (it is never committed). Keep its head; the source
            # topic/partition/offset headers point at the original.
            headers.append((H_TRUNCATED, str(size).encode()))
            key = key[:1024] if key else key
            value = (value or b"")[: limit - 1024]
        out.append((self._dlq_topic, key, value, self.dlq.dlq_partition(p), headers))

    def _prune_due(self, key: str, now: float) -> bool:
        """Whether ``key``'s history was last pruned ``PRUNE_EVERY`` before ``now``."""
        return now - self._pruned.get(key, 0.0) >= PRUNE_EVERY

    def _component_pruner(self) -> Callable[[str, ComponentTracker], None]:
        """What a components checkpoint calls before writing each tracker: prunes its
        history when ``PRUNE_EVERY`` has passed since its last prune, or since it was
        first written here if it was small then (``FIRST_PRUNE_POINTS``); one clock
        reading a checkpoint: it asks of every tracker it writes."""
        now = time.time()
        pruned = self._pruned
        due = now - PRUNE_EVERY
        cut = now - self.rt.retention
        lateness = self.rt.settings.allowed_lateness

        def prune(key: str, tracker: ComponentTracker) -> None:
            last = pruned.get(key)
            if last is None:
                pruned[key] = now
                if len(tracker.history.ts) < FIRST_PRUNE_POINTS:
                    return
            elif last > due:
                return
            pruned[key] = now
            tracker.prune(cut, lateness)

        return prune

    # -- stage 2 -------------------------------------------------------------------

    async def stage2(self, batch: dict[Any, Sequence[Any]]) -> list[Any]:
        """Apply a fetch's segment messages to the service trackers.

        The segments of one service come from several stage-1 partitions, each in event
        time order, but interleaved by batch: applied as they came, every batch of one
        partition would land "in the past" of another's and make the tracker re-evaluate
        the interval each time. So all of a service's segments of the fetch are handed
        to the domain at once, which merges them into time order (``stage2.apply_all``,
        a slice of the fetch's services a call).
        """
        catalog = self.rt.catalog
        svcs = self.rt.services
        by_service: dict[str, list[segwire.Columns]] = {}
        part_of: dict[str, int] = {}  # service -> the segments partition it came on
        decode = segwire.decode_columns
        decode_many = segwire.decode_many
        many = segwire.MAGIC_MANY
        for tp, records in batch.items():
            p = tp.partition
            for rec in records:
                try:
                    value = rec.value
                    if value.startswith(many):
                        shares = decode_many(value)
                    else:  # one service's, keyed by its name (earlier versions)
                        key = rec.key
                        name = key.decode() if isinstance(key, bytes) else str(key)
                        shares = [(name, decode(value))]
                except Exception as exc:  # not ours: never fatal
                    self.segment_log.warning("unreadable segment message %s[%d]@%d: %r",
                                             rec.topic, p, rec.offset, exc)
                    continue
                for name, segments in shares:
                    parts = by_service.get(name)
                    if parts is None:
                        by_service[name] = [segments]
                        part_of[name] = p
                    else:
                        parts.append(segments)
        concat = segwire.concat
        items = [(name, parts[0] if len(parts) == 1 else concat(parts))
                 for name, parts in by_service.items()]
        for chunk in stage2_slices(items):
            gone = apply_stage2_slice(svcs, chunk, part_of, catalog)
            if self.rollups is not None:
                self.rollups.mark_columns(chunk, gone)
            if perf_counter() >= self._yield_at:
                await self._yield()
        return []

    async def after_seek(self) -> None:
        """On every assignment, before any record of it is processed: refuse internal
        topics of the wrong size, decide which input partitions are co-partitioned with
        the tables, and read what a crashed predecessor dead-lettered after its last
        checkpoint (``agents/routing.py``)."""
        rt = self.rt
        app = rt.app
        consumer = app.consumer
        settings = rt.settings
        try:
            check_internal_topics(settings, consumer.topic_partitions)
        except InternalTopicError as exc:
            await refuse(rt, str(exc))
        await self.topics.dlq.maybe_declare()
        assignor = app.assignor
        try:
            self._copartitioned = (assignor.group_for_topic(settings.events_topic)
                                   == assignor.group_for_topic(self._reroute_topic))
        except KeyError:
            self._copartitioned = False
        self._direct_ok = set()
        self._fwd_inflight = {}
        self._fwd_end = {}
        owned = sorted(rt.owned_partitions(rebalancing_ok=True))
        tps = [self._reroute_tp(q) for q in owned]
        self._reroute_end = {}
        if tps:
            ends = await consumer.highwaters(*tps)
            self._reroute_end = {tp.partition: int(off or 0) for tp, off in ends.items()}
        dlq_partitions = len(await app.producer._ensure_producer().partitions_for(
            self._dlq_topic) or ()) or settings.partitions
        ledger = self.dlq = deadletters.Ledger(dlq_partitions)

        def mark_of(q: int) -> int:
            stats = rt.stats.get(stats_key(q))
            return 0 if stats is None else stats.dlq

        starts = ledger.starts(owned, mark_of)
        if starts:
            n = ledger.adopt(await deadletters.scan(app, self._dlq_topic, starts), owned)
            if n:
                log.info("%d DLQ records of a predecessor's last batches: not sent again", n)
        log.info("input %s: %s; records of the %d table partitions owned here are "
                 "classified where read (once their re-route partitions are read), the "
                 "others forwarded", settings.events_topic,
                 "co-partitioned with the tables" if self._copartitioned else
                 f"{consumer.topic_partitions(settings.events_topic)} partitions, not "
                 f"{settings.partitions}", len(owned))

    async def checkpoint_components(self) -> list[Any]:
        """Write every component tracker and partition counter changed since the last
        checkpoint, once; the futures. Per partition of the components changelog the
        counters go first, then the trackers, so a crash keeps a prefix (see
        PartitionStats)."""
        rt = self.rt
        for q in rt.owned_partitions():
            # Every DLQ record of the batches this checkpoint covers is delivered
            # (the consumer waited for their sends) and counted in these counters.
            key = stats_key(q)
            stats = rt.stats.get(key)
            if stats is None:
                continue
            stats.adopt_legacy_marks(q)
            mark = self.dlq.mark(q, stats.dlq, stats.marks)
            if mark != stats.dlq:
                stats.dlq = mark
                rt.stats.touch(key, q)
        futures = await rt.stats.flush(self.send)
        faults.point("checkpoint")
        futures += await rt.components.flush(self.send, self._component_pruner(), self._many())
        return futures

    async def checkpoint_services(self) -> list[Any]:
        """Write every service tracker changed since the last checkpoint, once; first
        the day rollups of what changed, computed before the trackers are pruned and on
        the broker before a pruned tracker is sent (a day before a tracker's cut can no
        longer be recomputed, so its rollup must not be the write a crash loses).

        Only a checkpoint that prunes a tracker waits for the rollups to be on the
        broker (a round trip with the pipeline stopped: the consumer holds its batch
        lock). Without a prune a lost rollup write is recomputed from the unpruned
        tracker: the segments' offsets are committed only once every write here is
        delivered, so stage 2 applies them again and marks their days dirty. A prune
        waits for the rollups of earlier checkpoints still in flight as well."""
        rollups = self.rollups
        services = self.rt.services
        now = time.time()
        due: set[str] = set()
        young: set[str] = set()  # due, but holding nothing a prune would drop
        old = now - self.rt.retention  # no prune cuts later (``_prune_service``)
        for key in services.dirty_keys():
            if self._prune_due("s:" + key, now):
                tracker = services.get(key)
                (due if tracker is None or _holds_before(tracker, old) else young).add(key)

        def prune(key: str, tracker: ServiceTracker) -> None:
            if key in due:
                self._prune_service(key, tracker, now)
            elif key in young:
                # Nothing to drop: no cut moves, so no rollup has to be on the broker
                # first (after a start every service is due, and a storm of fresh
                # events waited a round trip for them with the pipeline stopped).
                self._pruned["s:" + key] = now
                for tl in tracker.components.values():  # as ``prune`` does
                    tl.compact_tags()

        many = self._many()
        if rollups is None:
            return await services.flush(self.send, prune, many)
        await self._update_rollups(rollups)
        futures = await rollups.flush(self.send, many)
        unacked = [f for f in self._rollups_unacked if not f.done()] + futures
        if unacked and due:
            await asyncio.gather(*unacked)
            unacked = []
        futures += await services.flush(self.send, prune, many)
        # the horizons pruning moved
        horizons = await rollups.flush(self.send, many)
        self._rollups_unacked = unacked + horizons
        return futures + horizons

    def _many(self) -> Any:
        """``send_many`` for the checkpoints' changelog records, when there is a raw
        producer to build record batches with (else one ``send`` per record)."""
        return self.send_many if self.raw_producer is not None else None

    async def _update_rollups(self, rollups: RollupKeeper) -> None:
        """``rollups.update()`` a slice of services at a time, letting the event loop
        serve a scrape between slices and holding the next slice while a /metrics
        response is being written (up to SCRAPE_HOLD_MAX s in all). After a backlog the
        day rollups of every changed service are computed here (~1 s at 10,000
        services): in one go, a scrape that came meanwhile waited for all of it. An
        update of one slice (a checkpoint of a steady stream) neither yields nor waits.
        The batch lock is held throughout: events wait instead."""
        rt = self.rt
        held = 0.0  # seconds held so far: the slices before a scrape do not count
        while not rollups.update(ROLLUP_SLICE):
            await asyncio.sleep(0)
            while rt.scrapes_writing and held < SCRAPE_HOLD_MAX:
                t = time.monotonic()
                await asyncio.sleep(SCRAPE_POLL)
                held += time.monotonic() - t

    def _prune_service(self, key: str, tracker: ServiceTracker, now: float) -> None:
        self._pruned["s:" + key] = now
        cut = now - self.rt.retention
        if self.rollups is not None:  # not before what a day rollup may still need
            cut = self.rollups.prune_cut(key, cut, tracker)
        tracker.prune(cut, self.rt.catalog.calendar(key))


def _holds_before(tracker: ServiceTracker, cut: float) -> bool:
    """Whether ``tracker.prune`` at ``cut`` or earlier could drop a point: some timeline
    of it has a point before ``cut`` other than its first (the point in force at a cut
    stays)."""
    timelines = itertools.chain((tracker.timeline,), tracker.components.values())
    return any(len(tl.ts) > 1 and tl.ts[1] <= cut for tl in timelines)


class InternalTopicError(RuntimeError):
    """An internal topic exists with a partition count the worker cannot work with."""


async def refuse(rt: Runtime, reason: str) -> None:
    """Stop the worker cleanly (leave the group, write nothing) because of ``reason``,
    a setup it cannot work with: one line in the log, and the command exits with the
    configuration error status (``agents/cli/worker.py``). Never returns."""
    import os
    import signal

    log.error("%s", reason)
    rt.refused = reason
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.Event().wait()  # cancelled by the stop


def check_internal_topics(settings: Any, count: Callable[[str], int | None]) -> None:
    """Raise ``InternalTopicError`` naming every internal topic whose partition count
    is not ``--partitions`` (``count(topic)``: its partitions, None if unknown)."""
    names = [settings.reroute_topic, settings.segments_topic,
             f"{settings.app_id}-components-changelog", f"{settings.app_id}-services-changelog"]
    wrong = [(t, n) for t in names if (n := count(t)) is not None and n != settings.partitions]
    if wrong:
        listed = ", ".join(f"{t} has {n}" for t, n in wrong)
        raise InternalTopicError(
            f"internal topics of app {settings.app_id!r} do not have --partitions "
            f"{settings.partitions} partitions: {listed}. They belong to slawatch and "
            f"must all have the same count: start the workers with --partitions "
            f"{wrong[0][1]} if that is the group's setting, or delete the app's internal "
            f"topics ({', '.join(names)}) to start this app id afresh (its state is lost), "
            f"or use a new --app-id.")


def install_pipeline(app: Any, rt: Runtime, topics: Any) -> Pipeline:
    """Register both stages on ``app`` as batch handlers; returns the pipeline.

    The handlers run only after Faust's table recovery and its seek to the committed
    offsets (the BatchConsumer processes nothing of a partition before that seek), so
    they always start from recovered tables.
    """
    from agents.worker import batching

    batching.install(app)
    pipeline = Pipeline(rt, topics, lambda *a: app.producer.send(*a))
    pipeline.raw_producer = app.producer._ensure_producer
    batching.register_batch_topic(app, topics.events_in, pipeline.stage1,
                                  alignment.Aligner([rt.settings.events_topic]))
    batching.register_batch_topic(app, topics.segments, pipeline.stage2)
    batching.register_seek_hook(app, pipeline.after_seek)
    batching.register_checkpoint(app, topics.events_in, pipeline.checkpoint_components,
                                 COMPONENTS_CHECKPOINT, lambda: rt.components.dirty)
    batching.register_checkpoint(app, topics.segments, pipeline.checkpoint_services,
                                 SERVICES_CHECKPOINT, lambda: rt.services.dirty)
    return pipeline

"""The two stages of the worker: component events -> component trackers -> service trackers.

Stage 1 consumes ``component-events`` (and the internal re-route topic), classifies
every message with the engine's ``ComponentTracker`` and forwards the ``Segment`` of
each change to every service that depends on the component, on the segments topic
keyed (and explicitly partitioned) by service. Stage 2 applies the segments to the
service's ``ServiceTracker``.

Both are batch handlers of ``batching.BatchConsumer``: they get every record Faust
fetched for one partition at once, and per batch each changed tracker is serialized and
written to its table once, and the segments for one service travel as one message, so
the per-event cost is the engine's work. A handler returns the futures of its writes;
the consumer commits the batch's offsets only once they all succeeded.

Bad input never stops the worker: a message that cannot be decoded, and an event that
is too late to apply, go to the DLQ with the reason and their origin in headers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

from agents.worker import alignment, segwire
from agents.worker.rollups import RollupKeeper
from agents.worker.runtime import Runtime
from agents.worker.state import PartitionStats, first_time, stats_key
from streams.batch import Columns, WireSegment, apply_columns, decode, take
from streams.component import ComponentTracker
from streams.events import ComponentEvent
from streams.service import ServiceTracker, in_time_order_columns
from streams.states import State

log = logging.getLogger("slawatch.pipeline")

#: Header names on DLQ records (values are UTF-8).
H_REASON = "slawatch-reason"
H_TOPIC = "slawatch-source-topic"
H_PARTITION = "slawatch-source-partition"
H_OFFSET = "slawatch-source-offset"
#: Set (to the original size in bytes) when a DLQ record carries only the message's head.
H_TRUNCATED = "slawatch-truncated"
#: Room left under the producer's max request size for headers and batch overhead.
DLQ_HEADROOM = 64 * 1024

#: Longest stretch (s) a batch handler runs without letting other tasks run.
YIELD_EVERY = 0.02
#: Records of one partition decoded and applied at a time (between yields).
SLICE = 2048

#: Seconds between table writes of each stage. A service tracker holds its whole
#: history (up to the SLA period), so in an alert storm writing it dominates stage 2;
#: after a crash stage 2 replays at most this much of the segments topic.
COMPONENTS_CHECKPOINT = 0.5
SERVICES_CHECKPOINT = 2.0

#: Prune a tracker's history at most this often (seconds) when it is written anyway.
PRUNE_EVERY = 300.0

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
        self.dlq_log = RateLimitedLog(log)
        self.segment_log = RateLimitedLog(log)
        self._pruned: dict[str, float] = {}
        self._last_offset: dict[tuple[str, int], int] = {}
        self._dlq_topic = topics.dlq.get_topic_name()
        self._reroute_topic = topics.reroute.get_topic_name()
        self._segments_topic = topics.segments.get_topic_name()
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

        One call for the whole fetch, so each service gets one segments message with
        the segments of every partition, which stage 2 merges into time order. In a
        large fetch, what a partition ran ahead of the others in event time is left
        for the next fetch (``alignment.cuts``; the consumer seeks back to it).
        Returns the futures of what it sent (DLQ and re-route records, then segments);
        the changed trackers and counters are written by ``checkpoint_components``.
        """
        rt = self.rt
        now = time.time()
        # Partitions that ran ahead in event time keep the rest for the next fetch.
        inputs = {tp: recs for tp, recs in batch.items() if tp.topic != self._reroute_topic}
        for tp, n in alignment.cuts(inputs, self._event_ts).items():
            batch[tp] = batch[tp][:n]
        fanout: dict[str, list[WireSegment]] = {}
        out: list[tuple[str, bytes | None, bytes | None, int | None, Any]] = []
        n = 0
        for tp, records in batch.items():
            p = tp.partition
            topic = tp.topic
            stats = rt.stats.get(stats_key(p))
            if stats is None:
                stats = PartitionStats()
            ranges = stats.offsets.get(topic)
            if ranges is None:
                ranges = stats.offsets[topic] = []
            last = self._last_offset.get((topic, p), -1)
            if records[0].offset <= last:
                rt.counters.rewound += 1
                log.info("offset went back on %s[%d]: %d after %d", topic, p,
                         records[0].offset, last)
            # Redelivered after a crash (counted already): classify again, count nothing.
            firsts = _first_times(ranges, records)
            for lo in range(0, len(records), SLICE):
                self._events(records[lo:lo + SLICE], firsts and firsts[lo:lo + SLICE], p,
                             now, stats, fanout, out)
                if perf_counter() >= self._yield_at:
                    await self._yield()
            self._last_offset[(topic, p)] = records[-1].offset
            rt.stats.put(stats_key(p), stats, p)
            n += len(records)
        send = self.send
        futures = [await send(t, k, v, part, h) for t, k, v, part, h in out]
        part_svc = rt.service_partition
        seg_topic = self._segments_topic
        last_seg: dict[int, Any] = {}
        encode = segwire.encode
        for name, segs in fanout.items():
            sp = part_svc(name)
            fut = await send(seg_topic, name.encode(), encode(segs), sp)
            futures.append(fut)
            last_seg[sp] = fut
        for fut in last_seg.values():
            fut.add_done_callback(self._segment_delivered)
        rt.counters.batches += 1
        rt.counters.events += n
        return futures

    @staticmethod
    def _event_ts(rec: Any) -> float | None:
        return alignment.event_ts(rec.value)

    async def _yield(self) -> None:
        """Let the web server and the consumer's callbacks run during a long batch.

        A fetch can hold tens of thousands of records; without this, a scrape would wait
        for the whole batch. Readers may see a batch half applied, which is just a more
        recent state; nothing is written or committed until the batch ends.
        """
        await asyncio.sleep(0)
        self._yield_at = perf_counter() + YIELD_EVERY

    def _segment_delivered(self, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        md = fut.result()
        end = self.segments_end
        end[md.partition] = max(end.get(md.partition, 0), md.offset + 1)

    def _events(self, records: Sequence[Any], firsts: list[bool] | None, p: int, now: float,
                stats: PartitionStats, fanout: dict[str, list[WireSegment]],
                out: list[Any]) -> None:
        """Stage 1 on consecutive records of partition ``p``: decode, re-route, apply.

        ``firsts[i]`` tells whether record ``i`` is delivered for the first time (None:
        all are); only first deliveries are counted and dead-lettered.
        """
        rt = self.rt
        counts = stats.counts
        cols, index, rejects = decode([rec.value for rec in records], now)
        for i, reason in rejects:
            if firsts is None or firsts[i]:
                self._count(counts, "invalid")
                self._dead_letter(records[i], reason, out)
        if index is None:
            index = list(range(len(records)))
        comps = cols[0]
        if records[0].topic != self._reroute_topic:
            # Arrived on the wrong partition: forward the original bytes to the right
            # one, where they are classified and counted once, so a component's history
            # stays in one partition.
            part = rt.component_partition
            away = {c for c in set(comps) if part(c) != p}
            if away:
                keep = []
                for k, c in enumerate(comps):
                    if c in away:
                        # A redelivery was forwarded the first time (the checkpoint that
                        # counted it waited for that send); again would count it twice.
                        j = index[k]
                        if firsts is None or firsts[j]:
                            rt.counters.rerouted += 1
                            out.append((self._reroute_topic, c.encode(), records[j].value,
                                        part(c), None))
                    else:
                        keep.append(k)
                cols = take(cols, keep)
                index = [index[k] for k in keep]
                comps = cols[0]
        table = rt.components
        live: dict[str, ComponentTracker] = {}
        for c in set(comps):
            tracker = table.get(c)
            if tracker is not None:
                live[c] = tracker
        known = set(live)
        again = None if firsts is None else [not firsts[j] for j in index]
        done = apply_columns(live, cols, rt.catalog.reverse_index, rt.settings.allowed_lateness,
                             fanout, resend_duplicates=True, redelivered=again, catch=True)
        for c, tracker in live.items():
            if c in known:
                table.touch(c, p)
            else:
                table.put(c, tracker, p)
        # Accepted events are not listed: every applied event is accepted, or in
        # ``others`` or ``errors``; only first deliveries are counted.
        applied_first = len(index) if firsts is None else sum(map(firsts.__getitem__, index))
        for i, outcome in done.others:
            j = index[i]
            first = firsts is None or firsts[j]
            if outcome == "unmapped":
                self._unmapped(cols, i, p, stats, first)
            if first:
                applied_first -= 1
                self._count(counts, outcome)
                if outcome == "late":
                    self._dead_letter(records[j], "late", out)
        for i, error in done.errors:
            # An engine bug must not stop the pipeline: the message gets an outcome
            # (invalid), goes to the DLQ with the error, and the log has the trace.
            j = index[i]
            rec = records[j]
            log.error("internal error on %s[%d]@%d", rec.topic, p, rec.offset, exc_info=error)
            if firsts is None or firsts[j]:
                applied_first -= 1
                self._count(counts, "invalid")
                self._dead_letter(rec, f"internal error: {type(error).__name__}: {error}", out)
        counts["accepted"] = counts.get("accepted", 0) + applied_first

    @staticmethod
    def _count(counts: dict[str, int], outcome: str) -> None:
        counts[outcome] = counts.get(outcome, 0) + 1

    def _unmapped(self, cols: Columns, i: int, p: int, stats: PartitionStats, first: bool) -> None:
        """An event of a component no service reads: counted by the caller, observed
        for the unmapped estimate, and kept in the component's own history if the
        catalog lists it (its availability is still reported)."""
        comp, st, ts = cols[0][i], cols[1][i], cols[2][i]
        state = State(st)
        if first:
            stats.unmapped.observe(comp, state, ts)
        if comp in self.rt.catalog.components:
            tracker = self._component(comp, p)
            outcome, _ = tracker.apply(ComponentEvent(comp, state, ts),
                                       self.rt.settings.allowed_lateness)
            if outcome == "accepted":
                self.rt.components.touch(comp, p)

    def _component(self, comp: str, p: int) -> ComponentTracker:
        comps = self.rt.components
        tracker = comps.get(comp)
        if tracker is None:
            tracker = ComponentTracker(comp)
            comps.put(comp, tracker, p)
        return tracker

    def _dead_letter(self, rec: Any, reason: str, out: list[Any]) -> None:
        self.dlq_log.warning(
            "rejected message %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, reason
        )
        headers = [
            (H_REASON, reason.encode()),
            (H_TOPIC, str(rec.topic).encode()),
            (H_PARTITION, str(rec.partition).encode()),
            (H_OFFSET, str(rec.offset).encode()),
        ]
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
        out.append((self._dlq_topic, key, value, None, headers))

    def _prune_due(self, key: str) -> float | None:
        """``now`` if ``key``'s history was last pruned ``PRUNE_EVERY`` ago, else None."""
        now = time.time()
        if now - self._pruned.get(key, 0.0) < PRUNE_EVERY:
            return None
        self._pruned[key] = now
        return now

    def _prune_component(self, key: str, tracker: ComponentTracker) -> None:
        now = self._prune_due(key)
        if now is not None:
            tracker.prune(now - self.rt.retention, self.rt.settings.allowed_lateness)

    # -- stage 2 -------------------------------------------------------------------

    async def stage2(self, batch: dict[Any, Sequence[Any]]) -> list[Any]:
        """Apply a fetch's segment messages to the service trackers.

        The segments of one service come from several stage-1 partitions, each in event
        time order, but interleaved by batch: applied as they come, every batch of one
        partition would land "in the past" of another's and make the tracker re-evaluate
        the interval (correct, but O(history since then) per segment). So each service's
        segments of the whole fetch are merged by start time first, keeping every
        component's own order (a component's later segment overrides its earlier one,
        so that order is the one that must not change; the engine's result does not
        depend on the order across components), and applied with ``apply_many``, which
        re-evaluates once from the first segment that lands in the past.
        """
        catalog = self.rt.catalog
        svcs = self.rt.services
        by_service: dict[str, tuple[int, list[segwire.Columns]]] = {}
        decode = segwire.decode_columns
        for tp, records in batch.items():
            p = tp.partition
            for rec in records:
                key = rec.key
                name = key.decode() if isinstance(key, bytes) else str(key)
                try:
                    segments = decode(rec.value)
                except Exception as exc:  # not ours: never fatal
                    self.segment_log.warning("unreadable segment message %s[%d]@%d: %r",
                                             rec.topic, p, rec.offset, exc)
                    continue
                entry = by_service.get(name)
                if entry is None:
                    by_service[name] = (p, [segments])
                else:
                    entry[1].append(segments)
        for name, (p, parts) in by_service.items():
            model = catalog.models.get(name)
            if model is None:
                continue  # the service left the catalog since this was sent
            tracker = svcs.get(name)
            if tracker is None:
                tracker = ServiceTracker(name)
                svcs.put(name, tracker, p)
            cols = segwire.concat(parts)
            tracker.apply_many(in_time_order_columns(*cols), model)
            svcs.touch(name, p)
            if self.rollups is not None:
                self.rollups.mark(name, cols.starts)
            if perf_counter() >= self._yield_at:
                await self._yield()
        return []

    async def checkpoint_components(self) -> list[Any]:
        """Write every component tracker and partition counter changed since the last
        checkpoint, once; the futures. Per partition of the components changelog the
        counters go first, then the trackers, so a crash keeps a prefix (see
        PartitionStats)."""
        rt = self.rt
        futures = await rt.stats.flush(self.send)
        futures += await rt.components.flush(self.send, self._prune_component)
        return futures

    async def checkpoint_services(self) -> list[Any]:
        """Write every service tracker changed since the last checkpoint, once; first
        the day rollups of what changed, computed before the trackers are pruned and on
        the broker before a pruned tracker is sent (a day before a tracker's cut can no
        longer be recomputed, so its rollup must not be the write a crash loses)."""
        rollups = self.rollups
        if rollups is None:
            return await self.rt.services.flush(self.send, self._prune_service)
        rollups.update()
        futures = await rollups.flush(self.send)
        if futures:
            await asyncio.gather(*futures)
        futures += await self.rt.services.flush(self.send, self._prune_service)
        return futures + await rollups.flush(self.send)  # the horizons pruning moved

    def _prune_service(self, key: str, tracker: ServiceTracker) -> None:
        now = self._prune_due("s:" + key)
        if now is not None:
            cut = now - self.rt.retention
            if self.rollups is not None:  # not before what a day rollup may still need
                cut = self.rollups.prune_cut(key, cut, tracker)
            tracker.prune(cut, self.rt.catalog.calendar(key))


def _first_times(ranges: list[list[int]], records: Sequence[Any]) -> list[bool] | None:
    """Record the records' offsets as counted; per record whether it is new, or None
    when all are (consecutive offsets after every counted one: the common case)."""
    lo, hi = records[0].offset, records[-1].offset
    if hi - lo == len(records) - 1 and (not ranges or ranges[-1][1] < lo):
        if ranges and ranges[-1][1] == lo - 1:
            ranges[-1][1] = hi
        else:
            ranges.append([lo, hi])
        return None
    return [first_time(ranges, rec.offset) for rec in records]


def install_pipeline(app: Any, rt: Runtime, topics: Any) -> Pipeline:
    """Register both stages on ``app`` as batch handlers; returns the pipeline.

    The handlers run only after Faust's table recovery and its seek to the committed
    offsets (the BatchConsumer processes nothing of a partition before that seek), so
    they always start from recovered tables.
    """
    from agents.worker import batching

    batching.install(app)
    pipeline = Pipeline(rt, topics, lambda *a: app.producer.send(*a))
    batching.register_batch_topic(app, topics.events_in, pipeline.stage1)
    batching.register_batch_topic(app, topics.segments, pipeline.stage2)
    batching.register_checkpoint(app, topics.events_in, pipeline.checkpoint_components,
                                 COMPONENTS_CHECKPOINT, lambda: rt.components.dirty)
    batching.register_checkpoint(app, topics.segments, pipeline.checkpoint_services,
                                 SERVICES_CHECKPOINT, lambda: rt.services.dirty)
    return pipeline

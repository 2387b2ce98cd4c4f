"""A Faust consumer that hands whole fetched batches to a handler.

Why: Faust delivers every record one at a time. ``Consumer._drain_messages`` wraps each
message in ``Service.wait_first(callback(message), suspend_flow.wait())`` (two tasks and
an ``asyncio.wait`` per message), the conductor decodes it into an ``Event``, puts it on
the stream's queue, and the agent takes it off again with sensors and an ack per
message: 100-300 us of CPU per record, against ~3 us for aiokafka's ``getmany``
underneath (docs/perf/faust-throughput-findings.md). Settings, ``take()`` and
``concurrency`` all sit downstream of that hand-off and do not help.

``BatchConsumer`` keeps everything Faust owns -- the consumer thread, group membership,
the Faust assignor (so changelog partitions stay co-partitioned with their source and
recovery works), the rebalance callbacks, flow control, table recovery and the commit
timer -- and changes one thing: records of topics registered with
``register_batch_topic`` go to an async handler as ``{tp: [ConsumerRecord, ...]}``, one
call per fetch for all partitions of the handler's topics. Every other topic (changelogs
during recovery) still takes Faust's per-message path, unchanged.

The handler returns the send futures of everything the batch wrote (table changelog
records, forwarded messages, DLQ records). The consumer keeps its own commit position
for batch topics instead of Faust's list of acked offsets:

* ``_expect[tp]``: the next offset to process. Set from the committed offset (or the
  log start) every time Faust seeks to committed; records before it are dropped, and a
  batch that starts *after* it (records fetched before the seek, delivered after it) is
  not processed: the partition is sought back. Only a gap seen twice in a row at the same
  place is accepted as a real hole in the log.
* A handler may shorten a partition's list to a non-empty prefix: the consumer acks
  the prefix and keeps the records it left (``_carry``), which go first in that
  partition's next batch. Before the handler, the topic's ``alignment.Aligner`` (if
  registered with one) holds back what a partition ran ahead of the others in event
  time the same way, a partition's whole list if need be. They are not fetched
  again: a seek back would have the broker send them and aiokafka parse them twice,
  and would throw away what was already prefetched of that partition, so the next
  fetch waited for a new round trip. The fetch position stays where it was, so the
  next fetch goes on after them; a seek (a rebalance, a gap) forgets them, and they
  come again from the new position.
* ``_done[tp]``: the commit position. It moves to the end of a batch only when every
  future of that batch and of all earlier batches succeeded, so a committed offset
  always has its state in the changelog. A failed send stops the worker (the offsets
  stay uncommitted, Kafka redelivers: at-least-once).

Faust's own bookkeeping has two holes this avoids (found by the restart tests): it
treats a committed offset of 0 as "none" and then commits whatever run of acks comes
first, and its producer buffer flush gives up after 0.1 s and lets a commit overtake a
changelog write.

Rebalances: a batch holds ``batch_lock`` and ``wait_empty`` (Faust calls it on revoke
and stop) takes the lock and waits for in-flight sends, so partitions are never revoked
in the middle of a batch. Batches fetched under an older generation, or while the flow
is stopped, are dropped; Faust seeks back to the committed offsets before resuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from agents.process import gcpolicy
from agents.worker import alignment, faults

log = logging.getLogger("slawatch.batching")

#: What a batch handler returns: futures that must succeed before the batch's offsets
#: may be committed.
Futures = Sequence["asyncio.Future[Any]"]
BatchHandler = Callable[[dict[TP, Sequence[Any]]], Awaitable[Futures]]
#: Writes what the batches since the last checkpoint changed; returns the futures.
Checkpoint = Callable[[], Awaitable[Futures]]

#: Seconds between checkpoints (table writes) while batches keep coming.
CHECKPOINT_INTERVAL = 0.5
#: A checkpoint waits at least this many times as long as the last one took, so writing
#: the tables takes at most 1/COST_FACTOR of the worker's time. A tracker is written
#: whole, and in a long alert storm histories (and so each write) keep growing.
COST_FACTOR = 20.0
#: ... but never longer than this (s): what a crash makes the worker read again.
CHECKPOINT_MAX_INTERVAL = 10.0
#: Write at once when this many objects wait: one write of all of them would hold their
#: encoded values and the producer's per-record state at the same time (100,000
#: component trackers: ~90 MiB that the allocator keeps afterwards).
MAX_PENDING = 20_000

#: Batches of one partition whose sends may be in flight at once (back-pressure).
MAX_INFLIGHT = 32
#: Longest wait (s) for the seek to committed (and its hooks) that ends a rebalance.
SEEK_WAIT = 30.0
#: "Accept any first offset" (auto offset reset to latest: there is no fixed start).
ANY = -1
#: Longest wait (s) for a fetch while records held back by a handler wait for their
#: partition's next batch; then they are handed on alone. (Without held records the
#: drain loop waits up to Faust's 1 s; a fetch returns as soon as any partition has
#: records.)
CARRY_WAIT = 0.1
#: Batches a record may be held back by an aligner (``alignment.Aligner``) before it is
#: handed on whatever its event time: a partition that stays away from the fetches,
#: or whose publisher's clock lags, delays the others by this many batches, never
#: stalls them, and what waits in memory is at most this many fetches a partition.
MAX_HOLD = 3


@dataclass
class BatchStats:
    """Counters of the batch path, for /metrics, the bench and the tests."""

    fetches: int = 0
    batches: int = 0
    records: int = 0
    dropped: int = 0  # records fetched before a seek or a rebalance (delivered again)
    gaps: int = 0  # times a batch started after the expected offset
    held: int = 0  # records left for their partition's next batch (each time they are)
    own: int = 0  # records this worker wrote, handed on from their send (``apply_own``)
    checkpoints: int = 0  # table writes of the batches since the one before
    wait_seconds: float = 0.0  # in the fetch
    waiting_since: float = 0.0  # perf_counter() when the fetch now waited for began; 0: none
    handle_seconds: float = 0.0  # in handlers
    first_at: float = 0.0  # wall clock of the first and the last batch handled
    last_at: float = 0.0
    begun_at: float = 0.0  # wall clock when the first batch's handler began
    fetched_at: float = 0.0  # wall clock when the first batch's records were fetched


@dataclass
class _Checkpoint:
    """One table group's writes: its function, how often, and the batches waiting."""

    fn: Checkpoint
    interval: float
    unsaved: list[tuple[TP, int, int, asyncio.Future[Any] | None]] = field(default_factory=list)
    last: float = field(default_factory=perf_counter)
    cost: float = 0.0  # seconds the last write took (encoding, store, handing to the producer)
    pending: Callable[[], int] | None = None  # objects the next write would write
    #: When the first of ``unsaved`` was added (perf_counter): the wait counts from the
    #: later of it and the last write. A crash replays what came since the first unsaved
    #: batch, so that bounds the replay; counted from the last write alone, the first
    #: batch after a quiet spell was written at once and again an interval later (a
    #: storm shorter than the interval wrote every tracker it changed twice).
    since: float = 0.0

    def due(self, now: float) -> bool:
        if not self.unsaved:
            return False
        wait = min(CHECKPOINT_MAX_INTERVAL, max(self.interval, COST_FACTOR * self.cost))
        if now - max(self.last, self.since) >= wait:
            return True
        return self.pending is not None and self.pending() >= MAX_PENDING


def _delivered(cp: _Checkpoint, began: float) -> Callable[[Any], None]:
    """A callback for the writes of a checkpoint begun at ``began``: their cost is the
    time until the broker acknowledged them, if longer than the hand-off. Encoding and
    handing trackers to the producer is the smaller part of a write in a long storm
    (whole trackers, growing with history): the producer's socket writes and the
    broker's own work were ~2x it in profiles of the fan-out-5 sweep point."""

    def done(_: Any) -> None:
        cp.cost = max(cp.cost, perf_counter() - began)

    return done


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with a batch path for registered topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}
        self.batch_lock = asyncio.Lock()
        self.batch_stats = BatchStats()
        self._expect: dict[TP, int] = {}
        self._done: dict[TP, int] = {}
        self._inflight: dict[TP, deque[tuple[int, int, asyncio.Future[Any]]]] = {}
        self._gap_at: dict[TP, tuple[int, int]] = {}
        #: records a handler held back, first in their partition's next batch
        self._carry: dict[TP, list[Any]] = {}
        #: how often the records of ``_carry[tp]`` were held: ``(count, times)`` runs
        self._carry_held: dict[TP, list[tuple[int, int]]] = {}
        #: the same of this fetch's lists, the carried records first (``_with_carry``)
        self._held: dict[TP, list[tuple[int, int]]] = {}
        #: partitions not paused in this fetch (None: all)
        self._active: Any = None
        #: what keeps a handler's partitions together in event time
        self._aligners: dict[BatchHandler, alignment.Aligner[TP]] = {}
        self._send_error: BaseException | None = None
        # Set once the seek to committed that ends a rebalance has set ``_expect``.
        self._sought = asyncio.Event()
        self.checkpoints: list[_Checkpoint] = []
        #: Awaited after every seek to committed, before any record is processed.
        self.seek_hooks: list[Callable[[], Awaitable[None]]] = []
        self._checkpoint_of: dict[str, _Checkpoint] = {}  # topic -> its checkpoint
        #: records ``apply_own`` took, waiting for ``_apply_own``
        self._own: dict[TP, list[Any]] = {}
        self._own_task: asyncio.Future[None] | None = None
        self._own_error: BaseException | None = None

    # -- positions -----------------------------------------------------------------

    def _is_batch(self, tp: TP) -> bool:
        return tp.topic in self.batch_handlers

    async def perform_seek(self) -> None:
        """Seek to committed (Faust), then take the committed offsets as the start."""
        await super().perform_seek()
        tps = [tp for tp in self.assignment() if self._is_batch(tp)]
        if not tps:
            return
        reset = str(self.app.conf.consumer_auto_offset_reset).lower()
        start: dict[TP, int] = {}
        unset = []
        for tp in tps:
            committed = self._committed_offset.get(tp)
            if committed is not None and committed > 0:
                start[tp] = committed
            else:
                unset.append(tp)
        if unset:
            if reset == "latest":
                start.update(dict.fromkeys(unset, ANY))
            else:
                earliest = await self.earliest_offsets(*unset)
                for tp in unset:
                    start[tp] = max(0, int(earliest.get(tp) or 0))
        self._carry.clear()  # positions are the committed offsets again
        self._carry_held.clear()
        for aligner in self._aligners.values():
            aligner.reached.clear()
        for tp, offset in start.items():
            self._expect[tp] = offset
            self._gap_at.pop(tp, None)
        for hook in self.seek_hooks:
            await hook()
        faults.point("recovery")
        self._sought.set()

    @property
    def sought(self) -> asyncio.Event:
        """Set once the seek (and its hooks) that ends a rebalance is done."""
        return self._sought

    def next_offset(self, tp: TP) -> int | None:
        """The next offset of batch partition ``tp`` to process (None: not assigned)."""
        offset = self._expect.get(tp)
        return None if offset is None or offset == ANY else offset

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # Nothing may be processed before the seek to committed that ends a rebalance.
        self._sought.clear()
        for tp in assigned:
            self._forget(tp)
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._sought.clear()
        for tp in revoked:
            self._forget(tp)
        await super().on_partitions_revoked(revoked)

    def _forget(self, tp: TP) -> None:
        self._expect.pop(tp, None)
        self._done.pop(tp, None)
        self._inflight.pop(tp, None)
        self._gap_at.pop(tp, None)
        self._carry.pop(tp, None)
        self._carry_held.pop(tp, None)
        for aligner in self._aligners.values():
            aligner.forget(tp)

    # -- commit --------------------------------------------------------------------

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        yield from super()._filter_tps_with_pending_acks(topics)
        for tp in list(self._done):
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        if self._is_batch(tp):
            return self._done.get(tp)
        result: int | None = super()._new_offset(tp)
        return result

    def _track(self, tp: TP, end: int, count: int, fut: asyncio.Future[Any] | None) -> None:
        """Make ``end`` committable once ``fut`` (and earlier batches') succeeded."""
        queue = self._inflight.setdefault(tp, deque())
        if fut is None:
            if not queue:
                self._done[tp] = end
                self._n_acked += count
                return
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
        queue.append((end, count, fut))
        fut.add_done_callback(lambda _f: self._advance(tp, queue))

    def _advance(self, tp: TP, queue: deque[tuple[int, int, asyncio.Future[Any]]]) -> None:
        if self._inflight.get(tp) is not queue:
            # Revoked (or re-sought) since: retrieve the outcome, commit nothing.
            for _, _, f in queue:
                if f.done() and not f.cancelled():
                    f.exception()
            return
        while queue and queue[0][2].done():
            end, count, fut = queue[0]
            exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
            if exc is not None:
                if self._send_error is None:
                    self._send_error = exc
                    log.error("a write of %s failed; its offsets stay uncommitted: %r", tp, exc)
                return
            queue.popleft()
            self._done[tp] = end
            self._n_acked += count

    async def _wait_inflight(self) -> None:
        futs = [f for q in list(self._inflight.values()) for _, _, f in q]
        if futs:
            await asyncio.gather(*futs, return_exceptions=True)

    async def checkpoint(self, cp: _Checkpoint) -> asyncio.Future[Any] | None:
        """Write ``cp``'s tables now; its batches since its last checkpoint become
        committable once those writes (and the batches' own sends) succeeded. Call with
        ``batch_lock`` held. Returns the future of the writes.
        """
        cp.last = perf_counter()
        if not cp.unsaved:
            return None
        entries, cp.unsaved = cp.unsaved, []
        # What the batches sent (segments, re-routed events, DLQ records) must be on the
        # broker before the tables say those batches were done: after a crash the
        # restored tables and counters must not hold work whose sends were lost, since
        # their redelivery counts nothing and dead-letters nothing again.
        sent = [f for _, _, _, f in entries if f is not None and not f.done()]
        if sent:
            await asyncio.wait(sent)
        for f in sent:
            exc = f.exception() if not f.cancelled() else asyncio.CancelledError()
            if exc is not None:
                if self._send_error is None:
                    self._send_error = exc
                raise exc
        faults.point("sent")
        began = perf_counter()
        futures = await cp.fn()
        cp.cost = perf_counter() - began
        saved = self._gather(futures)
        if saved is not None:
            saved.add_done_callback(_delivered(cp, began))
        self.batch_stats.checkpoints += 1
        # A partition's batches since the last checkpoint become committable together,
        # once the writes are acknowledged: one entry in flight for all of them (as
        # many as MAX_INFLIGHT batches behind one slow write made the consumer wait
        # for that write before it fetched again). Their own sends are done (waited
        # for above); one that failed still fails the entry.
        merged: dict[TP, tuple[int, int, list[asyncio.Future[Any]]]] = {}
        for tp, end, count, fut in entries:
            if tp not in self._expect:
                continue  # revoked since: its offsets are the next owner's
            _, total, futs = merged.get(tp, (end, 0, []))
            if fut is not None and (fut.cancelled() or fut.exception() is not None):
                futs.append(fut)
            merged[tp] = (end, total + count, futs)
        for tp, (end, count, futs) in merged.items():
            if saved is not None:
                futs.append(saved)
            self._track(tp, end, count, self._gather(futs))
        return saved

    async def _maybe_checkpoint(self) -> None:
        now = perf_counter()
        for cp in self.checkpoints:
            if cp.due(now):
                async with self.batch_lock:
                    await self.checkpoint(cp)

    async def wait_empty(self) -> None:
        # Called on revoke and stop: never in the middle of a batch, and only once what
        # the batches changed is written and on the broker (so the commit that follows,
        # or the next owner's recovery, has it).
        async with self.batch_lock:
            for cp in self.checkpoints:
                saved = await self.checkpoint(cp)
                if saved is not None:
                    await asyncio.gather(saved, return_exceptions=True)
            await self._wait_inflight()
            await super().wait_empty()

    def status(self) -> dict[str, Any]:
        """Positions of the batch partitions, for ``/api/worker`` and the benchmarks."""

        def by_topic(offsets: dict[TP, int] | Any) -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for tp, off in offsets.items():
                if self._is_batch(tp) and off is not None:
                    out.setdefault(tp.topic, {})[str(tp.partition)] = int(off)
            return out

        return {
            "stats": asdict(self.batch_stats),
            "position": by_topic(self._expect),
            "committable": by_topic(self._done),
            "committed": by_topic(dict(self._committed_offset)),
            "inflight_batches": sum(len(q) for q in self._inflight.values()),
        }

    # -- the drain loop ------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        stats = self.batch_stats

        def should_stop() -> bool:
            return bool(self._stopped.is_set() or fetcher._stopped.is_set())

        try:
            while not should_stop():
                set_flag(CONSUMER_FETCHING)
                t0 = stats.waiting_since = perf_counter()
                records, active = await self._wait_next_records(
                    CARRY_WAIT if self._carry else 1.0)
                stats.waiting_since = 0.0
                stats.wait_seconds += perf_counter() - t0
                stats.fetches += 1
                if self._send_error is not None:
                    raise self._send_error
                if self._own_error is not None:
                    raise self._own_error
                with gcpolicy.paused:  # see agents/process/gcpolicy.py
                    await self._handle_fetch(records, active)
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    def _with_carry(self, records: Any, active: Any) -> dict[TP, list[Any]]:
        """``records`` with the held-back records of each active partition first."""
        out: dict[TP, list[Any]] = dict(records)
        for tp, held in list(self._carry.items()):
            if active is not None and tp not in active:
                continue  # paused: kept until it is fetched from again (or sought)
            del self._carry[tp]
            runs = self._carry_held.pop(tp, None) or [(len(held), 1)]
            last = held[-1].offset
            new = out.get(tp) or []
            if new and new[0].offset <= last:  # not expected: the position is after them
                new = [r for r in new if r.offset > last]
            out[tp] = [*held, *new] if new else held
            self._held[tp] = [*runs, (len(new), 0)] if new else runs
        return out

    async def _admit(self, tp: TP, recs: Sequence[Any], generation: int) -> Sequence[Any]:
        """The records of ``recs`` to process now, judged against the expected offset."""
        stats = self.batch_stats
        if not self._sought.is_set():
            # Fetched before this assignment's seek to committed and its hooks are done
            # (the partition is resumed just before that seek): wait for them, then judge
            # the records against the start the seek set. Not before the hooks: they
            # read what a crashed predecessor dead-lettered, which a record processed
            # meanwhile would be dead-lettered again against. Dropping the records would
            # lose them until the partition's next fetch (a gap: it seeks back), so only
            # a wait that this drain loop may itself be holding up ends in dropping them.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sought.wait(), SEEK_WAIT)
        expect = self._expect.get(tp)
        if (expect is None or not self._sought.is_set()
                or self.app.consumer_generation_id != generation):
            stats.dropped += len(recs)  # no longer ours: the next owner reads them
            log.info("%s: %d records fetched outside an assignment: dropped", tp, len(recs))
            return ()
        first = recs[0].offset
        if expect != ANY and first > expect:
            if self._gap_at.get(tp) != (expect, first):
                # Most likely records fetched before a seek, delivered after it.
                self._gap_at[tp] = (expect, first)
                stats.gaps += 1
                stats.dropped += len(recs)
                log.info("%s: batch starts at %d, expected %d: seeking back", tp, first, expect)
                await self.seek(tp, expect)
                return ()
            log.warning("%s: offsets %d..%d are missing from the log; going on at %d",
                        tp, expect, first - 1, first)
        self._gap_at.pop(tp, None)
        if expect != ANY and first < expect:
            recs = [r for r in recs if r.offset >= expect]
        if recs:
            queue = self._inflight.get(tp)
            if queue is not None and len(queue) >= MAX_INFLIGHT:
                await asyncio.wait([queue[0][2]])
        return recs

    async def _handle_fetch(self, records: Any, active: Any) -> None:
        """What the drain loop does with one fetch: the checkpoint due, the carried
        records, then each handler's batch (or Faust's per-message path)."""
        callback = self.callback
        handlers = self.batch_handlers
        to_message = self._to_message
        read_offset = self._read_offset
        monitor = self.app.monitor
        acks_enabled_for = self.app.topics.acks_enabled_for
        await self._maybe_checkpoint()
        await asyncio.sleep(0)
        self._held = {}
        self._active = active
        if self._carry and self.flow_active:
            records = self._with_carry(records or {}, active)
        if not records or self.should_stop:
            return
        if not self.flow_active:
            # A rebalance stopped the flow while these were fetched: not processed,
            # and their partitions' positions put back (``_unfetch``). Faust's getmany
            # seeks everything to committed here instead; that left changelog records
            # that arrived after Recovery's seek consumed and never delivered (the
            # recovery then waited for them for good: the worker stayed unready), and
            # its seek hooks ran while the tables were being recovered.
            await self._unfetch(records)
            return
        generation = self.app.consumer_generation_id
        groups: dict[BatchHandler, dict[TP, Sequence[Any]]] = {}
        unread: dict[TP, Sequence[Any]] = {}  # not processed: put back
        for tp, recs in records.items():
            if not recs:
                continue
            if not (active is None or tp in active or tp in self._buffered_partitions):
                unread[tp] = recs  # paused since the fetch began
                continue
            if self.app.consumer_generation_id != generation or not self.flow_active:
                unread[tp] = recs  # a rebalance started
                continue
            monitor.track_tp_end_offset(tp, self.highwater(tp))
            handler = handlers.get(tp.topic)
            if handler is not None:
                admitted = await self._admit(tp, recs, generation)
                if admitted:
                    groups.setdefault(handler, {})[tp] = admitted
                continue
            # Faust's per-message path (changelogs during recovery, other agents).
            for i, rec in enumerate(recs):
                offset = rec.offset
                r_offset = read_offset[tp]
                if r_offset is None or offset >= r_offset:
                    if offset - (r_offset or 0) > 1 and r_offset and acks_enabled_for(tp.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    await self.wait_first(callback(to_message(tp, rec)),
                                          self.suspend_flow.wait())
                    if not self.flow_active:
                        # Stopped while this one was delivered (the wait gave up on it):
                        # it and the rest are put back. A changelog record applied
                        # twice sets its key to the same value again.
                        unread[tp] = recs[i:]
                        break
                    read_offset[tp] = offset
        if unread:
            await self._unfetch(unread)
        for handler, batch in groups.items():
            await self._run(handler, batch, generation)
        await self._maybe_checkpoint()
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            await self.commit()

    async def _unfetch(self, records: Mapping[TP, Sequence[Any]]) -> None:
        """Put the position of each partition of ``records`` back to its first record,
        as if they had not been fetched; unless a seek moved it since (Recovery's,
        or the seek to committed that ends a rebalance): that seek stands.

        aiokafka advanced the positions when it handed the records over, and a
        changelog partition is positioned only once per rebalance (by Recovery,
        which then waits for every record up to the end it read): a changelog
        record fetched after that seek and not delivered was lost to the recovery.
        Stream partitions would come back through the seek to committed, but a
        position put back costs nothing and holds without one."""
        n = sum(len(r) for r in records.values())
        self.batch_stats.dropped += n
        firsts = {tp: (recs[0].offset, recs[-1].offset + 1)
                  for tp, recs in records.items() if recs}
        if firsts:
            consumer = self._thread._ensure_consumer()
            back = await self._thread.call_thread(_rewind, consumer, firsts)
            log.info("%d fetched records of %d partitions paused or revoked since the "
                     "fetch began (a rebalance): not processed, %d positions put back",
                     n, len(firsts), back)

    async def _run(self, handler: BatchHandler, batch: dict[TP, Sequence[Any]],
                   generation: int, own: bool = False) -> None:
        """One handler call for every admitted partition of its topics in this fetch
        (``own``: of records this worker wrote, ``apply_own``)."""
        stats = self.batch_stats
        if not stats.fetched_at:
            stats.fetched_at = time.time()
        expected = {tp: self._expect.get(tp) for tp in batch}
        async with self.batch_lock:
            if own and not self.flow_active:
                # A revoke began while they waited for the lock, and its checkpoint
                # may be written already: they are left to the log (the next owner,
                # or this worker after the seek to committed, reads them).
                return
            for tp in list(batch):
                if self._expect.get(tp) != expected[tp]:
                    await self._moved(tp, batch, expected[tp], generation)
            if self.app.consumer_generation_id != generation or not batch:
                stats.dropped += sum(len(r) for r in batch.values())
                return  # a rebalance started: Faust seeks back before resuming
            fetched = dict(batch)  # the handler may replace a list by a prefix of it
            aligner = self._aligners.get(handler)
            if aligner is not None:
                self._align(aligner, batch)
            futures: Futures = ()
            if batch:
                if not stats.begun_at:
                    stats.begun_at = time.time()
                t1 = perf_counter()
                futures = await handler(batch)
                stats.handle_seconds += perf_counter() - t1
            fut = self._gather(futures)
            if len(batch) < len(fetched) and self.app.consumer_generation_id == generation:
                for tp, recs in fetched.items():
                    if tp not in batch:  # held whole by the aligner
                        stats.held += len(recs)
                        self._carry[tp] = list(recs)
                        self._carry_held[tp] = _held_again(self._held.get(tp), recs, 0)
            for tp, recs in batch.items():
                last = recs[-1].offset
                rest = fetched[tp][len(recs):]
                if rest and self.app.consumer_generation_id == generation:
                    # Held back by the handler: first in the partition's next batch.
                    # (In a rebalance begun meanwhile, the seek to committed forgets
                    # them and they are fetched again.)
                    if rest[0].offset <= last:  # not a prefix after all
                        rest = [r for r in rest if r.offset > last]
                    stats.held += len(rest)
                    self._carry[tp] = list(rest)
                    self._carry_held[tp] = _held_again(self._held.get(tp), fetched[tp],
                                                       len(fetched[tp]) - len(rest))
                self._expect[tp] = last + 1
                if aligner is not None and tp.topic in aligner.topics:
                    aligner.processed(tp, recs)
                stats.batches += 1
                stats.records += len(recs)
                # Committable after the next checkpoint has written the tables.
                cp = self._checkpoint_of.get(tp.topic)
                if cp is None:
                    self._track(tp, last + 1, len(recs), fut)
                else:
                    if not cp.unsaved:
                        cp.since = perf_counter()
                    cp.unsaved.append((tp, last + 1, len(recs), fut))
            if batch:  # not when the aligner held all of it
                stats.last_at = time.time()
                if not stats.first_at:
                    stats.first_at = stats.last_at

    async def _moved(self, tp: TP, batch: dict[TP, Sequence[Any]], was: int | None,
                     generation: int) -> None:
        """``tp``'s expected offset moved while its records of ``batch`` waited for the
        lock. Forward, by ``apply_own`` handing on records of this worker's own sends:
        what it processed leaves the batch, the rest goes on. Otherwise (a seek, a
        revoke) none of them is processed."""
        recs = batch.pop(tp)
        now = self._expect.get(tp)
        if (now is None or now == ANY or was is None or was == ANY or now < was
                or self.app.consumer_generation_id != generation):
            self.batch_stats.dropped += len(recs)  # sought while we waited
            return
        rest = [r for r in recs if r.offset >= now]
        if not rest:
            return  # all processed already
        if rest[0].offset == now:
            batch[tp] = rest
            return
        # Not expected: the log has no hole there. Fetched again from ``now``.
        self.batch_stats.dropped += len(rest)
        log.info("%s: batch goes on at %d, expected %d: seeking back", tp,
                 rest[0].offset, now)
        await self.seek(tp, now)

    # -- records this worker wrote -------------------------------------------------

    def apply_own(self, rec: Any) -> None:
        """Hand ``rec``, a record this worker wrote to a batch topic and the broker
        acknowledged at ``rec.offset``, to the topic's handler now rather than when a
        fetch brings it back, if this worker processes its partition and everything
        before it there is processed (a record of another writer before it: it waits
        for the fetch, like the rest). Call from the send's done callback, in the order
        of the sends. The fetch that brings it later finds it processed
        (``_expect`` is past it) and skips it.

        Why: stage 2 of a live event waited for a second broker round trip (its
        segment fetched back from the broker), which with tansu was half of the
        slowest events' latency (``bench/latency_trace.py``: hop2). The record is on
        the broker when its send is acknowledged, so processing it from memory is
        what the fetch would do, one hop sooner; commits, checkpoints and a restart
        see no difference."""
        tp = TP(rec.topic, rec.partition)
        expect = self._expect.get(tp)
        if expect is None or expect == ANY or not self.flow_active:
            return
        pending = self._own.get(tp)
        if rec.offset != (pending[-1].offset + 1 if pending else expect):
            return  # behind (a backlog) or after a record of another writer
        if pending is None:
            pending = self._own[tp] = []
        pending.append(rec)
        if self._own_task is None:
            self._own_task = asyncio.ensure_future(self._apply_own())

    async def _apply_own(self) -> None:
        try:
            while self._own and not self.should_stop:
                own, self._own = self._own, {}
                if not (self.flow_active and self._sought.is_set()):
                    continue  # a rebalance: the fetch after it brings them
                generation = self.app.consumer_generation_id
                groups: dict[BatchHandler, dict[TP, Sequence[Any]]] = {}
                for tp, recs in own.items():
                    handler = self.batch_handlers.get(tp.topic)
                    expect = self._expect.get(tp)
                    if handler is None or expect is None or expect == ANY or tp in self._carry:
                        continue
                    run = _run_from(recs, expect)  # in offset order: apply_own
                    if run:
                        groups.setdefault(handler, {})[tp] = run
                for handler, batch in groups.items():
                    firsts = {tp: recs[0].offset for tp, recs in batch.items()}
                    with gcpolicy.paused:
                        await self._run(handler, batch, generation, own=True)
                    for tp, first in firsts.items():
                        self.batch_stats.own += max(0, self._expect.get(tp, first) - first)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # A handler's error stops the worker as in the drain loop (which raises it).
            log.exception("processing records of this worker's own sends failed")
            if self._own_error is None:
                self._own_error = exc
        finally:
            self._own_task = None

    def _align(self, aligner: alignment.Aligner[TP], batch: dict[TP, Sequence[Any]]) -> None:
        """Hold back, of ``aligner``'s topics' partitions in ``batch``, what ran ahead of
        the event time all of them reached (``alignment.cuts``): their lists become
        prefixes, or leave ``batch`` when all of it waits. Partitions of those topics
        that this fetch did not bring count too while they have records to read."""
        topics = aligner.topics
        part = {tp: recs for tp, recs in batch.items() if tp.topic in topics}
        if not part:
            return
        active = self._active
        waiting = [tp for tp, expect in self._expect.items()
                   if tp.topic in topics and tp not in part and expect != ANY
                   and (active is None or tp in active) and self._unread(tp, expect)]
        ended = [tp for tp, recs in part.items() if not self._unread(tp, recs[-1].offset + 1)]
        ripe = {}
        for tp in part:
            runs = self._held.get(tp)
            if runs:
                ripe[tp] = sum(n for n, times in runs if times >= MAX_HOLD)
        for tp, n in aligner.cuts(part, ripe, waiting, ended).items():
            if n:
                batch[tp] = batch[tp][:n]
            else:
                del batch[tp]

    def _unread(self, tp: TP, offset: int) -> bool:
        """Whether partition ``tp`` has records from ``offset`` on (unknown: True)."""
        try:
            high = self.highwater(tp)
        except Exception:  # not assigned (any more): nothing to wait for
            return False
        return high is None or high > offset

    @staticmethod
    def _gather(futures: Futures) -> asyncio.Future[Any] | None:
        if not futures:
            return None
        if len(futures) == 1:
            return futures[0]
        return asyncio.gather(*futures)


def _run_from(recs: Sequence[Any], start: int) -> list[Any]:
    """The records of ``recs`` (in offset order) at ``start``, ``start + 1``, ... without
    a hole; those before ``start`` are left out."""
    out: list[Any] = []
    nxt = start
    for rec in recs:
        if rec.offset < nxt:
            continue
        if rec.offset != nxt:
            break
        out.append(rec)
        nxt += 1
    return out


async def _rewind(consumer: Any, firsts: Mapping[TP, tuple[int, int]]) -> int:
    """On the consumer's thread: seek each partition of ``firsts`` to ``first`` if its
    position is still at ``end`` or after it (``first``, ``end``: the offsets of the
    records handed over, and after them; after it: a batch whose last records were
    compacted away or a control batch ends past the last record). A seek since the
    fetch went back (Recovery's, to committed) and stands. Nothing here awaits between
    the check and the seek.

    Reads aiokafka's partition state (``_subscription``, checked against the range in
    ``agents.transport.versions``): its public ``position()`` waits when there is no
    valid position, and a wait would let another seek in between."""
    assigned = consumer.assignment()
    back = 0
    for tp, (first, end) in firsts.items():
        if tp not in assigned:  # faust's TP and aiokafka's TopicPartition compare equal
            continue
        state = consumer._subscription.subscription.assignment.state_value(tp)
        if state is not None and state.has_valid_position and state.position >= end:
            consumer.seek(tp, first)
            back += 1
    return back


def _held_again(runs: list[tuple[int, int]] | None, recs: Sequence[Any], done: int
                ) -> list[tuple[int, int]]:
    """How often the records of ``recs`` after the first ``done`` were held, now that
    they are held once more; ``runs``: how often those of ``recs`` were before, as
    ``(count, times)`` runs (None: never)."""
    out = []
    for count, times in runs or ((len(recs), 0),):
        if done >= count:
            done -= count
            continue
        out.append((count - done, times + 1))
        done = 0
    return out


def install(app: Any) -> None:
    """Make ``app`` build a BatchConsumer (call before the app starts)."""
    from agents.transport import versions

    versions.require("faust-streaming", __name__)
    versions.require("aiokafka", __name__)  # _rewind
    app.transport.Consumer = BatchConsumer


def _batch_consumer(app: Any) -> BatchConsumer:
    consumer = app.consumer
    if not isinstance(consumer, BatchConsumer):
        raise TypeError("call batching.install(app) before registering topics or checkpoints")
    return consumer


def register_checkpoint(app: Any, topics: Any, fn: Checkpoint,
                        interval: float = CHECKPOINT_INTERVAL,
                        pending: Callable[[], int] | None = None) -> None:
    """Make ``fn`` write the tables of ``topics``' handler every ``interval`` seconds (or
    longer when writing is slow, see ``COST_FACTOR``), as soon as ``pending()`` reaches
    ``MAX_PENDING``, and before a revoke or stop; their offsets are committed only once
    it has."""
    consumer = _batch_consumer(app)
    cp = _Checkpoint(fn, interval, pending=pending)
    consumer.checkpoints.append(cp)
    for name in topics.topics:
        consumer._checkpoint_of[name] = cp


def register_seek_hook(app: Any, hook: Callable[[], Awaitable[None]]) -> None:
    """Await ``hook()`` after every seek to committed (the end of a rebalance), before
    any record of the new assignment is processed; an exception stops the worker."""
    _batch_consumer(app).seek_hooks.append(hook)


def register_batch_topic(app: Any, topic: Any, handler: BatchHandler,
                         aligner: alignment.Aligner[TP] | None = None) -> None:
    """Deliver ``topic``'s records in batches to ``handler({tp: records})``; with an
    ``aligner``, its topics' partitions together in event time (records that ran ahead
    are handed on in a later batch).

    The topic is added to the app's subscriptions (the conductor declares it); no agent
    iterates it. Its records reach the handler as aiokafka_patches' ``LeanRecord``
    tuples (``topic``, ``partition``, ``offset``, ``timestamp``, ``key``, ``value``,
    ``headers``), not aiokafka's ``ConsumerRecord``: building those was most of the
    client's CPU per record.
    """
    from agents.transport import aiokafka_patches

    app.topics.add(topic)
    consumer = _batch_consumer(app)
    aiokafka_patches.lean_records_for(topic.topics)
    for name in topic.topics:
        consumer.batch_handlers[name] = handler
    if aligner is not None:
        consumer._aligners[handler] = aligner

"""Stage 1 keeps the input partitions together in event time while it works off a backlog.

Why: a service's components are spread over the input partitions, and stage 2
re-evaluates a service over ``[start, frontier)`` from all its component copies for
every segment that lands before its frontier (``ServiceTracker._recompute``). When one
partition runs ahead of another in event time, every segment of the one behind lands
in that past, so each point of the drift is evaluated twice (once in order, once in
the re-evaluation). Kafka Streams picks records across partitions by timestamp for the
same reason.

Where drift comes from (measured on the sweep's 200k-event storms, 8 partitions): a
fetch brings up to 4 MiB of a partition, half of a partition's backlog there, and the
first fetch after an assignment brought only 5 of the 8 partitions. Processed as
fetched, the 5 ran 1,800 s of event time ahead of the 3 and stage 2 re-evaluated about
1.5 points for each point it evaluated in order (the largest single cost of stage 2 on
every sweep shape).

So when a fetch is large (a backlog, not live traffic: ``MIN_RECORDS``), every
partition is processed up to the event time all of them have reached, and the rest is
held (``BatchConsumer._carry`` keeps it in memory, first in the partition's next
batch). The time reached is the smallest of:

* each partition's last record in this batch, unless that is the last it has to read
  (``ended``: its next records, if any come, are live ones), and
* for a partition with records still to read that this fetch did not bring (``behind``):
  the time of the last record processed from it (-inf before the first one).

Bounds: a record held back ``batching.MAX_HOLD`` times is handed on whatever its time
(``ripe``), so a partition that stays away from the fetches, or whose publisher's clock
lags, delays the others by that many batches, never stalls them, and what waits in
memory is at most that many fetches a partition. The partition that sets the time is
processed whole.
Correctness does not depend on any of this (the engine gives the same results in any
order); it only decides how much out-of-order work stage 2 gets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import orjson

#: Fetches with fewer records than this are processed whole (live traffic: no delay).
MIN_RECORDS = 4096

K = TypeVar("K", bound=Hashable)


def event_ts(raw: bytes | None) -> float | None:
    """The numeric ``ts`` of an event message, None if it has none (bad input is the
    pipeline's business, not this heuristic's)."""
    try:
        obj = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None
    ts = obj.get("ts") if type(obj) is dict else None
    return float(ts) if isinstance(ts, float | int) and not isinstance(ts, bool) else None


def record_ts(rec: Any) -> float | None:
    """``event_ts`` of a fetched record's value."""
    return event_ts(rec.value)


def cuts(batch: Mapping[K, Sequence[Any]], ts_of: Callable[[Any], float | None],
         min_records: int = MIN_RECORDS, ripe: Mapping[K, int] | None = None,
         behind: Mapping[K, float] | None = None,
         ended: Collection[K] = ()) -> dict[K, int]:
    """How many records to process now, for each partition of ``batch`` that should
    hold some back (0: all of them).

    ``ts_of(record)`` gives a record's event time. ``ripe[k]``: how many of ``k``'s
    first records were held back long enough (processed now whatever their time).
    ``behind[k]``: the event time reached by a partition not in ``batch`` that has
    records still to read. ``ended``: partitions of ``batch`` with no records to read
    after these (their times do not hold the others back). Looks at O(log n) records
    per partition: records of one partition come roughly in event time, and a cut in
    the wrong place costs only time.
    """
    behind = behind or {}
    if len(batch) + len(behind) < 2 or sum(map(len, batch.values())) < min_records:
        return {}
    lasts = {k: ts_of(recs[-1]) for k, recs in batch.items() if recs}
    known = [t for k, t in lasts.items() if t is not None and k not in ended]
    known += behind.values()
    if not known:
        return {}
    reached = min(known)
    out: dict[K, int] = {}
    for k, recs in batch.items():
        last = lasts.get(k)
        if last is None or last <= reached:
            continue
        lo = ripe.get(k, 0) if ripe else 0
        hi = len(recs)
        while lo < hi:  # the first record after ``reached``
            mid = (lo + hi) // 2
            t = ts_of(recs[mid])
            if t is None or t <= reached:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(recs):
            out[k] = lo
    return out


class Aligner(Generic[K]):
    """``cuts`` for a consumer's batches of some topics, with the event time each
    partition reached kept between batches (for the partitions a fetch did not bring).

    ``topics``: the names of the topics aligned (the input topic; not the re-route
    topic, whose records are forwarded ones of any time)."""

    def __init__(self, topics: Collection[str],
                 ts_of: Callable[[Any], float | None] = record_ts,
                 min_records: int = MIN_RECORDS) -> None:
        self.topics = frozenset(topics)
        self.ts_of = ts_of
        self.min_records = min_records
        #: per partition, the event time of the last record processed (when readable)
        self.reached: dict[K, float] = {}

    def cuts(self, batch: Mapping[K, Sequence[Any]], ripe: Mapping[K, int],
             waiting: Collection[K], ended: Collection[K] = ()) -> dict[K, int]:
        """``cuts`` of ``batch``; ``waiting``: partitions not in it with records still to
        read (their time is the one they reached, -inf before any)."""
        reached = self.reached
        behind = {k: reached.get(k, -math.inf) for k in waiting}
        return cuts(batch, self.ts_of, self.min_records, ripe, behind, ended)

    def processed(self, k: K, recs: Sequence[Any]) -> None:
        """``recs`` (non-empty) of partition ``k`` were handed on."""
        t = self.ts_of(recs[-1])
        if t is not None:
            self.reached[k] = t

    def forget(self, k: K) -> None:
        self.reached.pop(k, None)

"""Stage 1 keeps the input partitions together in event time while it works off a backlog.

Why: a fetch brings about as many bytes of every partition, but partitions cover event
time at different speeds (a partition with fewer components covers more time per
record). Working off a backlog, the partitions drift apart further with every fetch, so
the segments of the partition behind land in the past of every service's other
components, and each stage-2 batch re-evaluates the whole drift: cost per batch grows
with the backlog worked off so far (in a 1,000,000-event storm that re-evaluation was
the largest single cost of stage 2, and growing). Kafka Streams picks records across
partitions by timestamp for the same reason.

So when a fetch is large (a backlog, not live traffic), a partition may run ahead of
the event time every partition of the fetch has reached (the smallest of their last
event times) by at most the span that slowest partition's records cover; the rest is
left to be fetched again. A drift of one fetch is what stage 2 re-evaluates cheaply,
and allowing it spares short backlogs the refetch (holding back at the reached time
itself refetched ~25% of a 200k-event storm and made it ~10% slower). The partition
that sets the time is always processed whole, and every partition keeps at least half
of its records: a partition whose publisher's clock lags cannot stall the others.
Correctness does not depend on any of this (the engine gives the same results in any
order); it only decides how much out-of-order work stage 2 gets.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, TypeVar

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


def cuts(batch: Mapping[K, Sequence[Any]], ts_of: Callable[[Any], float | None],
         min_records: int = MIN_RECORDS) -> dict[K, int]:
    """How many records to process now, for each partition that should hold some back.

    ``ts_of(record)`` gives a record's event time. Looks at O(log n) records per
    partition: records of one partition come roughly in event time, and a cut in the
    wrong place costs only time.
    """
    if len(batch) < 2 or sum(map(len, batch.values())) < min_records:
        return {}
    lasts = {k: ts_of(recs[-1]) for k, recs in batch.items() if recs}
    known = [(t, k) for k, t in lasts.items() if t is not None]
    if len(known) < 2:
        return {}
    reached, slowest = min(known, key=lambda tk: tk[0])
    first = ts_of(batch[slowest][0])
    if first is not None and first < reached:
        reached += reached - first  # the drift allowed: one fetch of the slowest
    out: dict[K, int] = {}
    for k, recs in batch.items():
        last = lasts.get(k)
        if last is None or last <= reached:
            continue
        lo, hi = 0, len(recs)
        while lo < hi:  # the first record after ``reached``
            mid = (lo + hi) // 2
            t = ts_of(recs[mid])
            if t is None or t <= reached:
                lo = mid + 1
            else:
                hi = mid
        n = max(lo, (len(recs) + 1) // 2)
        if n < len(recs):
            out[k] = n
    return out

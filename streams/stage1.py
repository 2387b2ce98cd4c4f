"""Stage 1 of the pipeline as one domain call: a partition's records in, decisions out.

``classify`` takes the raw values of consecutive records of one partition and decides
everything the domain decides: which are invalid and why, which belong to another
partition, the outcome of every event, the component trackers it changed, the segments
to fan out to services, and what to dead-letter. The worker's agent only does the I/O
around it: reads the records, looks trackers up in its table and writes back the ones
returned, sends the forwards, the dead letters and the segments.

Only first deliveries are counted and dead-lettered (``firsts``); a redelivered record
is classified again so that its segments are re-sent (a forward lost in a crash is
repaired that way), but it changes no counter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from streams.batch import Columns, WireSegment, apply_columns, decode, take
from streams.catalog import Catalog
from streams.component import ComponentTracker
from streams.events import ComponentEvent
from streams.states import State
from streams.unmapped import UnmappedTracker

#: What ``streams.batch.decode`` returns: the valid events as columns, the position of
#: each in the batch (None: all, in order), ``(position, reason)`` of the others.
Decoded: TypeAlias = tuple[Columns, list[int] | None, list[tuple[int, str]]]


@dataclass(slots=True)
class Classified:
    """What ``classify`` decided about a batch of one partition's records.

    Indexes are positions in the batch. ``counts`` holds the outcomes of first
    deliveries only; ``dead_letters`` and ``away`` list first deliveries only.
    """

    counts: dict[str, int] = field(default_factory=dict)
    #: (index, reason): to the DLQ (invalid, late, or an internal error)
    dead_letters: list[tuple[int, str]] = field(default_factory=list)
    #: (index, component): belongs to another partition; forward it there
    away: list[tuple[int, str]] = field(default_factory=list)
    #: (index, component): a redelivery that belongs to another partition. Its first
    #: delivery went there; what that partition kept of it is its owner's to say
    #: (a crash may have kept this partition's mark and lost the other's state).
    away_again: list[tuple[int, str]] = field(default_factory=list)
    #: every tracker the batch changed or looked at, by component
    trackers: dict[str, ComponentTracker] = field(default_factory=dict)
    #: the components of ``trackers`` that did not exist before (to be stored)
    created: set[str] = field(default_factory=set)
    #: (index, exception): a tracker raised; the record is dead-lettered as invalid
    errors: list[tuple[int, Exception]] = field(default_factory=list)

    def count(self, outcome: str, n: int = 1) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + n


def classify(
    values: Sequence[bytes],
    firsts: list[bool] | None,
    now: float,
    *,
    lookup: Callable[[str], ComponentTracker | None],
    catalog: Catalog,
    allowed_lateness: float,
    fanout: dict[str, list[WireSegment]],
    unmapped: UnmappedTracker,
    here: Callable[[str], bool] | None = None,
    decoded: Decoded | None = None,
    lookup_many: Callable[[set[str]], dict[str, ComponentTracker]] | None = None,
    elsewhere: Callable[[set[str]], Iterable[str]] | None = None,
) -> Classified:
    """Decode, route, classify and apply ``values`` (consecutive records of one partition).

    ``firsts[i]`` says whether record ``i`` is delivered for the first time (None: all
    are). ``lookup`` finds a component's tracker (None: not seen yet); ``lookup_many``,
    when given, the trackers of a set of components at once (those it has: a new dict,
    which this call adds to and returns as ``trackers``). ``here(c)`` says
    whether component ``c`` belongs to this partition (None: every event is classified
    here, as for records already forwarded to their partition); ``elsewhere``, when
    given instead, the components of a set that do not belong to this partition (one
    call a slice). Segments of changes go
    into ``fanout`` (service -> segments); ``unmapped`` observes the first deliveries of
    components no service reads. ``decoded``: what ``decode(values, now)`` returns,
    when the caller decoded them already (``split``).
    """
    out = Classified()

    def first(i: int) -> bool:
        return firsts is None or firsts[i]

    cols, index, rejects = decoded if decoded is not None else decode(values, now)
    for i, reason in rejects:
        if first(i):
            out.count("invalid")
            out.dead_letters.append((i, reason))
    if index is None:
        index = list(range(len(values)))
    comps = cols[0]
    uniq = set(comps)
    if elsewhere is not None or here is not None:
        away = (set(elsewhere(uniq)) if elsewhere is not None
                else {c for c in uniq if here is not None and not here(c)})
        if away:
            keep = []
            for k, c in enumerate(comps):
                if c not in away:
                    keep.append(k)
                elif first(index[k]):
                    out.away.append((index[k], c))
                else:
                    out.away_again.append((index[k], c))
            cols = take(cols, keep)
            index = [index[k] for k in keep]
            comps = cols[0]
            uniq -= away
    live: dict[str, ComponentTracker]
    if lookup_many is not None:
        live = lookup_many(uniq)
    else:
        live = {}
        for c in uniq:
            tracker = lookup(c)
            if tracker is not None:
                live[c] = tracker
    again = None if firsts is None else [not firsts[j] for j in index]
    done = apply_columns(live, cols, catalog.reverse_index, allowed_lateness, fanout,
                         resend_duplicates=True, redelivered=again, catch=True)
    # ``live`` is this call's own dict (``lookup_many`` returns a new one): handed on, not
    # copied; at 20,000 components a slice looks up nearly as many trackers as records.
    out.trackers = live
    if done.created:
        out.created.update(done.created)
    # Every applied event is accepted unless listed in ``others`` or ``errors``.
    accepted = len(index) if firsts is None else sum(1 for j in index if firsts[j])
    for i, outcome in done.others:
        j = index[i]
        if outcome == "unmapped":
            _unmapped(out, cols[0][i], State(cols[1][i]), cols[2][i], first(j), lookup,
                      catalog, allowed_lateness, unmapped)
        if first(j):
            accepted -= 1
            out.count(outcome)
            if outcome == "late":
                out.dead_letters.append((j, "late"))
    for i, error in done.errors:
        j = index[i]
        out.errors.append((j, error))
        if first(j):
            accepted -= 1
            out.count("invalid")
            out.dead_letters.append((j, f"internal error: {type(error).__name__}: {error}"))
    out.count("accepted", accepted)
    return out


def _unmapped(out: Classified, comp: str, state: State, ts: float, first: bool,
              lookup: Callable[[str], ComponentTracker | None], catalog: Catalog,
              allowed_lateness: float, unmapped: UnmappedTracker) -> None:
    """An event of a component no service reads: observed for the unmapped estimate,
    and kept in the component's own history if the catalog lists it (its availability
    is still reported). Ids the catalog does not know get no tracker: a flood of
    made-up ids must not grow the tables."""
    if first:
        unmapped.observe(comp, state, ts)
    if comp not in catalog.components:
        return
    tracker = out.trackers.get(comp) or lookup(comp)
    created = tracker is None
    if tracker is None:
        tracker = ComponentTracker(comp)
    outcome, _ = tracker.apply(ComponentEvent(comp, state, ts), allowed_lateness)
    if created:
        out.created.add(comp)
        out.trackers[comp] = tracker
    elif outcome == "accepted":
        out.trackers[comp] = tracker


def split(values: Sequence[bytes], now: float,
          partitions_of: Callable[[Sequence[str]], Sequence[int]],
          invalid: int) -> dict[int, tuple[list[int], Decoded]]:
    """Consecutive records of one input partition grouped by the partition of their
    component, decoded once: per partition, the positions of its records in ``values``
    (ascending) and what ``decode`` returns for the values at those positions (to hand
    to ``classify``). ``partitions_of(comps)`` gives the partition of each component of
    a list, in order. A record that is not a valid event has no component: it goes to
    partition ``invalid``.

    Read where it is, an input partition that is not co-partitioned with the tables
    spreads over all of them: the one decode serves both the grouping and
    ``classify``.
    """
    n = len(values)
    if not n:
        return {}
    cols, index, rejects = decode(values, now)
    dest = partitions_of(cols[0])
    if index is None or (not rejects and len(index) == n):
        # Every record is a valid event: positions are column indexes.
        if len(set(dest)) == 1:
            return {dest[0]: (list(range(n)), (cols, None, []))}
        return {q: (at, (take(cols, at), None, [])) for q, at in _positions_by(dest).items()}
    q_of = [invalid] * n
    col_of: dict[int, int] = {}
    for k, pos in enumerate(index):
        q_of[pos] = dest[k]
        col_of[pos] = k
    reason = dict(rejects)
    out: dict[int, tuple[list[int], Decoded]] = {}
    for q, positions in _positions_by(q_of).items():
        ks: list[int] = []
        sub_index: list[int] = []
        sub_rejects: list[tuple[int, str]] = []
        for j, pos in enumerate(positions):
            col = col_of.get(pos)
            if col is None:
                sub_rejects.append((j, reason[pos]))
            else:
                ks.append(col)
                sub_index.append(j)
        out[q] = (positions, (take(cols, ks), sub_index if sub_rejects else None, sub_rejects))
    return out


def _positions_by(keys: Sequence[int]) -> dict[int, list[int]]:
    """The positions of each key in ``keys``, in order; keys in order of first appearance."""
    out: dict[int, list[int]] = {}
    for pos, key in enumerate(keys):
        at = out.get(key)
        if at is None:
            out[key] = [pos]
        else:
            at.append(pos)
    return out

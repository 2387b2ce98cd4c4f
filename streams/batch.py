"""A fetched batch of component events, decoded and applied as columns.

This is the hot path of stage 1 (and of ``Engine.apply_raw_many``). In an alert storm
every event changes a state, so the per-event cost is the whole cost; what is left per
event in Python is the tracker update itself. Decoding and validation work on whole
columns with C-level ``map`` and set operations: a batch in which every message is a
plain valid event (the normal case) is checked in a handful of passes, and only a batch
holding something unusual (bad JSON, a string ``ts``, a new component id) is decoded
message by message through ``parse_event``, which gives the reasons for the DLQ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import orjson

from streams import events as _events
from streams import native
from streams.component import _COMPACT_EVERY, ComponentTracker, Outcome
from streams.events import MAX_FUTURE_SECONDS, ComponentEvent, InvalidEvent, parse_event
from streams.states import BY_NAME

_INF = math.inf
#: Exact-case state names as plain ints; other spellings take ``parse_event``.
_STATE_OF: dict[str, int] = {name: int(state) for name, state in BY_NAME.items()}
_STATES = tuple(sorted(BY_NAME.values()))  # _STATES[i] is State(i)
_OPTIONAL_STR = frozenset((str, type(None)))
_FLOAT = {float}
_NUMBER = frozenset((float, int))
_loads = orjson.loads
_get: Any = dict.get  # typed Any: the checks below narrow what it returns

#: ``(component ids, states as ints, ts)``, one entry per event.
Columns = tuple[list[str], list[int], list[float]]
#: ``(component, start, end, state)``: end ``math.inf`` for "from start on" (it goes
#: on the wire as JSON ``null``: orjson writes an infinite float so).
WireSegment = tuple[str, float, float, int]


def decode_columns(raws: Sequence[bytes], now: float) -> Columns | None:
    """The batch as columns if every message is a plain valid event, else None.

    Plain means: a JSON object, a component id already known to be well formed, an
    exact-case state name, a numeric ``ts`` at most ``MAX_FUTURE_SECONDS`` ahead, and
    ``source``/``id`` strings or absent. Exactly the events ``parse_event`` accepts with
    these values, decoded to the same component, state and ts.
    """
    if not raws:
        return [], [], []
    fast = native.native
    if fast is not None:
        # The same checks in C, and plain messages read without building their dicts.
        return fast.columns_raw(raws if type(raws) is list else list(raws),  # type: ignore[no-any-return]
                                _events._valid_ids, _STATE_OF, now, MAX_FUTURE_SECONDS, _loads)
    try:
        objs = list(map(_loads, raws))
        comps = list(map(_get, objs, repeat("component")))  # TypeError: not a dict
        if not _events._valid_ids.issuperset(comps):
            return None
        names = list(map(_get, objs, repeat("state")))
        if not _STATE_OF.keys() >= set(names):
            return None
        tss = list(map(_get, objs, repeat("ts")))
        types = set(map(type, tss))
        if types != _FLOAT:
            if not types <= _NUMBER:  # bool is its own type: not a number here
                return None
            tss = list(map(float, tss))  # OverflowError for a huge int
        if max(tss) - now > MAX_FUTURE_SECONDS:
            return None
        if not (_OPTIONAL_STR.issuperset(map(type, map(_get, objs, repeat("source"))))
                and _OPTIONAL_STR.issuperset(map(type, map(_get, objs, repeat("id"))))):
            return None
    except (orjson.JSONDecodeError, TypeError, OverflowError):
        return None
    return comps, list(map(_STATE_OF.__getitem__, names)), tss


def decode_each(raws: Sequence[bytes], now: float) -> tuple[Columns, list[int], list[tuple[int, str]]]:
    """Message by message: the valid events as columns, the index of each in ``raws``,
    and ``(index, reason)`` for every message ``parse_event`` rejects."""
    comps: list[str] = []
    states: list[int] = []
    tss: list[float] = []
    index: list[int] = []
    rejects: list[tuple[int, str]] = []
    for i, raw in enumerate(raws):
        try:
            event = parse_event(raw, now)
        except InvalidEvent as exc:
            rejects.append((i, exc.reason))
            continue
        comps.append(event.component)
        states.append(int(event.state))
        tss.append(event.ts)
        index.append(i)
    return (comps, states, tss), index, rejects


def decode(raws: Sequence[bytes], now: float) -> tuple[Columns, list[int] | None, list[tuple[int, str]]]:
    """``decode_columns`` if it can, else ``decode_each``; the index is None when the
    columns hold every message in order."""
    cols = decode_columns(raws, now)
    if cols is not None:
        return cols, None, []
    return decode_each(raws, now)


@dataclass(slots=True)
class Applied:
    """What ``apply_columns`` did, beyond the segments it fanned out."""

    accepted: int = 0
    #: ``(column index, outcome)`` of every event not accepted: duplicate, late, or
    #: unmapped (not applied: the caller counts it and keeps its own books on it).
    others: list[tuple[int, Outcome]] = field(default_factory=list)
    #: ``(column index, exception)`` of events the tracker raised on (with ``catch``).
    errors: list[tuple[int, Exception]] = field(default_factory=list)
    #: the components whose trackers this call made (and added to ``trackers``), in
    #: the order made
    created: list[str] = field(default_factory=list)


def apply_columns(
    trackers: dict[str, ComponentTracker],
    cols: Columns,
    services_for: Mapping[str, tuple[str, ...]],
    lateness: float,
    fanout: dict[str, list[WireSegment]],
    *,
    resend_duplicates: bool = False,
    redelivered: Sequence[bool] | None = None,
    catch: bool = False,
) -> Applied:
    """Apply decoded events in order; the segment of every change goes to ``fanout``
    under each service that depends on the component.

    The same outcomes and trackers as ``ComponentTracker.apply`` on each event in turn:
    the in-order case (``ts`` after the component's newest event) is that method's fast
    path inlined, anything else calls it. Trackers missing from ``trackers`` are created
    there and listed in ``created``. ``resend_duplicates`` forwards the current truth
    around a duplicate's ``ts`` (the pipeline's redelivery repair: the first delivery's
    forward may have been lost in a crash). ``redelivered[i]`` marks event ``i`` as
    applied before: its current truth is forwarded whatever the outcome, late included.
    After a crash the trackers
    may come back from a checkpoint written after the event was applied while its
    forward never reached the broker; then the event is a duplicate, or late behind
    the events that followed it, and nothing else would send it again. Every state
    change in the trackers comes from some event, so forwarding the truth at each
    redelivered event's ``ts`` repairs every forward that was lost. With ``catch``, an
    exception from a tracker is recorded in ``errors`` instead of ending the batch half
    applied.
    """
    comps, states, tss = cols
    done = Applied()
    others = done.others
    fast = native.native
    if (fast is not None and type(trackers) is dict and type(services_for) is dict
            and type(comps) is list and type(states) is list and type(tss) is list):
        # The C loop applies the in-order events and stops at each other one, which
        # takes the Python path below; the same steps either way.
        n = len(comps)
        i = 0
        accepted = 0
        while True:
            i, acc = fast.apply_in_order(trackers, comps, states, tss, i, services_for, lateness,
                                         fanout, others, ComponentTracker, _COMPACT_EVERY,
                                         done.created)
            accepted += acc
            if i >= n:
                break
            accepted += _apply_one(trackers, comps[i], states[i], tss[i], i, services_for[comps[i]],
                                   lateness, fanout, done, resend_duplicates, redelivered, catch)
            i += 1
        done.accepted = accepted
        return done
    accepted = 0
    for i, (comp, st, ts) in enumerate(zip(comps, states, tss, strict=True)):
        services = services_for.get(comp)
        if not services:
            others.append((i, "unmapped"))
            continue
        tracker = trackers.get(comp)
        if tracker is None:
            tracker = trackers[comp] = ComponentTracker(comp)
            done.created.append(comp)
        if ts > tracker.newest:
            # ComponentTracker.apply's in-order path, inlined
            h = tracker.history
            hst = h.st
            old = hst[-1] if hst else 0
            h.ts.append(ts)
            hst.append(st)
            h.tag.append(0)  # NO_TAG
            tracker.newest = ts
            n = tracker._since_compact + 1
            if n >= _COMPACT_EVERY:
                tracker._since_compact = 0
                tracker.compact(ts - lateness)
            else:
                tracker._since_compact = n
            accepted += 1
            if old == st:
                continue
            _fan_out(fanout, services, (comp, ts, _INF, st))
            continue
        accepted += _apply_one(trackers, comp, st, ts, i, services, lateness, fanout, done,
                               resend_duplicates, redelivered, catch)
    done.accepted = accepted
    return done


def _apply_one(
    trackers: dict[str, ComponentTracker],
    comp: str,
    st: int,
    ts: float,
    i: int,
    services: tuple[str, ...],
    lateness: float,
    fanout: dict[str, list[WireSegment]],
    done: Applied,
    resend_duplicates: bool,
    redelivered: Sequence[bool] | None,
    catch: bool,
) -> int:
    """An event of a mapped component that is not in order for it: through
    ``ComponentTracker.apply``; returns 1 when accepted."""
    tracker = trackers[comp]
    try:
        outcome, segment = tracker.apply(ComponentEvent(comp, _STATES[st], ts), lateness)
        if segment is None and outcome != "accepted" and (
                (resend_duplicates and outcome == "duplicate")
                or (redelivered is not None and redelivered[i])):
            segment = tracker.segment_at(ts)
    except Exception as exc:
        if not catch:
            raise
        done.errors.append((i, exc))
        return 0
    if outcome != "accepted":
        done.others.append((i, outcome))
    if segment is not None:
        _fan_out(fanout, services, (comp, segment.start, segment.end, int(segment.state)))
    return outcome == "accepted"


def _fan_out(fanout: dict[str, list[WireSegment]], services: tuple[str, ...], seg: WireSegment) -> None:
    """``seg`` to every service that reads its component."""
    for svc in services:
        lst = fanout.get(svc)
        if lst is None:
            fanout[svc] = [seg]
        else:
            lst.append(seg)


def take(cols: Columns, keep: Sequence[int]) -> Columns:
    """The columns at the indexes ``keep``, in that order."""
    comps, states, tss = cols
    return (list(map(comps.__getitem__, keep)), list(map(states.__getitem__, keep)),
            list(map(tss.__getitem__, keep)))


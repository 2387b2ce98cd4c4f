"""Period reports (CONTRACT §7): a service's calendar month, from durable day rollups.

A **day rollup** is the exact account of one local day of one service over
``[start, covered)``: service-time seconds up, down and planned, the runs of unplanned
down inside service time clipped to the day (with the components blamed), and the
attribution of the down seconds (§4). It also holds the service's state at ``covered``,
which carries on after it: until the next day that has a rollup of its own, nothing
changed (a change would have made its day dirty and written a rollup for it). So a month
is exact from its rollups alone, long after the detailed history was pruned, and a quiet
service needs no writes at all.

Everything here is pure: no clock, no I/O. How the service's seconds count (agreed
service time, maintenance calendars: CONTRACT §6) comes in through ``Accounting``, which
turns the service's step function over ``[a, b)`` into *classified pieces*: up, planned,
down or outside service time. Without a service time that is the step function itself.
"""

from __future__ import annotations

import base64
import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from streams import native, sla
from streams.record import Packer, column
from streams.timeline import NO_TAG, Tag, Timeline

UP, PLANNED, DOWN, OUTSIDE = 0, 1, 2, 3

#: ``(a, b, state, blamed)``: the service is ``state`` (one of the four above) on
#: ``[a, b)``; ``blamed`` names the components blamed while it is DOWN.
Piece = tuple[float, float, int, Tag]


class Accounting(Protocol):
    """How one service's seconds count: the classification of its step function."""

    zone: str  # IANA zone of the service's days and months ("UTC" without service time)
    needs_components: bool  # whether ``carry`` reads the component states

    def view(self, tracker: Any, a: float, b: float) -> Timeline:
        """The service's classified step function (states 0..3), right on ``[a, b)``;
        ``tracker`` is a ``streams.service.ServiceTracker`` or None (no event yet)."""
        ...

    def carry(self, tail: Tail, a: float, b: float) -> Iterable[Piece]:
        """The classified pieces over ``[a, b)`` of a service whose step functions hold
        what ``tail`` says from before ``a`` on, unchanged."""
        ...


@dataclass(frozen=True, slots=True)
class Tail:
    """What holds after a rollup's covered part: the service's own state (before any
    calendar) and blame, and the components not up (for maintenance windows)."""

    state: int = UP
    tag: Tag = NO_TAG
    comps: tuple[tuple[str, int], ...] = ()


NO_TAIL = Tail()


class AllTheTime:
    """Agreed 24×7, no maintenance window: the step function as it is, in UTC days."""

    zone = "UTC"
    needs_components = False

    def view(self, tracker: Any, a: float, b: float) -> Timeline:
        return tracker.timeline if tracker is not None else Timeline()

    def carry(self, tail: Tail, a: float, b: float) -> Iterable[Piece]:
        return ((a, b, tail.state, tail.tag),) if b > a else ()


ALL_THE_TIME = AllTheTime()


class Calendared:
    """A service with a service time and/or maintenance windows (CONTRACT §6): the
    accounted step function of ``streams.accounting``, in the service time's zone."""

    def __init__(self, cal: Any) -> None:
        self.cal = cal
        self.zone = cal.zone or "UTC"
        self.needs_components = bool(cal.windows)

    def view(self, tracker: Any, a: float, b: float) -> Timeline:
        from streams.accounting import accounted

        return accounted(tracker, self.cal, b, b - a).timeline

    def carry(self, tail: Tail, a: float, b: float) -> Iterable[Piece]:
        from streams.service import ServiceTracker

        if b <= a:
            return ()
        held = ServiceTracker(self.cal.name)
        held.timeline = Timeline([a], [tail.state], [tail.tag])
        held.components = {c: Timeline([a], [s], [NO_TAG]) for c, s in tail.comps}
        return list(self.view(held, a, b).segments(a, b))


# -- calendar days and months in a zone ------------------------------------------------


@lru_cache(maxsize=64)
def _zone(name: str) -> Any:
    return UTC if name == "UTC" else ZoneInfo(name)


def _midnight(d: date, zone: str) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=_zone(zone)).timestamp()


def day_of(t: float, zone: str) -> date:
    """The local date of instant ``t``."""
    return datetime.fromtimestamp(t, _zone(zone)).date()


@lru_cache(maxsize=4096)
def day_bounds(d: date, zone: str) -> tuple[float, float]:
    """``[start, end)`` of local day ``d`` (23 or 25 hours on the days clocks change)."""
    return _midnight(d, zone), _midnight(d + timedelta(days=1), zone)


def parse_period(text: str) -> tuple[int, int]:
    """``"2026-11"`` -> (2026, 11); ValueError naming the text otherwise."""
    try:
        year, month = text.split("-")
        y, m = int(year), int(month)
        if len(year) != 4 or len(month) != 2 or not 1 <= m <= 12:
            raise ValueError
    except ValueError:
        raise ValueError(f"period {text!r}: expected YYYY-MM, e.g. 2026-11") from None
    return y, m


def period_label(t: float, zone: str) -> str:
    d = day_of(t, zone)
    return f"{d.year:04d}-{d.month:02d}"


@lru_cache(maxsize=4096)
def month_days(period: str, zone: str) -> tuple[date, ...]:
    y, m = parse_period(period)
    first = date(y, m, 1)
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return tuple(first + timedelta(days=i) for i in range((nxt - first).days))


@lru_cache(maxsize=4096)
def month_bounds(period: str, zone: str) -> tuple[float, float]:
    days = month_days(period, zone)
    return _midnight(days[0], zone), _midnight(days[-1] + timedelta(days=1), zone)


def next_period(period: str) -> str:
    y, m = parse_period(period)
    return f"{y + (m == 12):04d}-{m % 12 + 1:02d}"


def previous_period(period: str) -> str:
    y, m = parse_period(period)
    return f"{y - (m == 1):04d}-{(m - 2) % 12 + 1:02d}"


# -- day rollups -----------------------------------------------------------------------

Run = tuple[float, float, Tag]

#: A day's account at a point ``t`` of the view, before the piece that starts there:
#: ``(t, up, down, planned, runs, last run's end, last run's blamed set, tags in the
#: runs' table, the blame's values in the blame's key order)``. A change at or after
#: ``dirty`` leaves every piece before ``dirty`` as it was, so the day is recomputed
#: from the last mark before ``dirty`` instead of from midnight: the pieces after it
#: are added as a recomputation from midnight adds them, in the same order, onto the
#: very sums it had there (``tests/unit/streams/test_periods.py`` checks the reports
#: with marks at every point against the reference, and the rollups against a
#: recomputation from midnight).
Mark = tuple[float, float, float, float, int, float, int, int, "array[float]"]
#: A mark at every this many points of a day's view ...
MARK_EVERY = 64
#: ... of which a running day keeps this many (older ones thinned out, every other one
#: dropped, so they reach back to midnight ever more sparsely), a day that is over
#: ``MARKS_KEPT_DONE`` (a late event lands near its end; anything earlier recomputes
#: it whole). The blame's values are the most of a mark: ~0.4 KiB for 10 components.
MARKS_KEPT = 16
MARKS_KEPT_DONE = 2


class Runs:
    """Down runs ``(a, b, blamed)`` in time order, as columns.

    A day rollup of a flapping service holds a run per outage, and the running day is
    rewritten at every services checkpoint: as a list each run was a tuple, two floats
    and a sorted tag tuple (~170 B); here it is two doubles and a 4-byte index into a
    table of the day's blamed sets. Stored as the columns' bytes in a checkpoint record
    (``to_obj`` with a ``Packer``; base64 in JSON without one).
    """

    __slots__ = ("_gx", "ab", "ix", "tags")

    def __init__(self, runs: Iterable[Run] = ()) -> None:
        self.ab: array[float] = array("d")  # a0, b0, a1, b1, ...
        self.ix: array[int] = array("I")  # the blamed set of run i: tags[ix[i]]
        self.tags: list[Tag] = [NO_TAG]
        self._gx: dict[Tag, int] = {NO_TAG: 0}
        self._untrack()
        for run in runs:
            self.append(run)

    def _untrack(self) -> None:
        # Off the cyclic collector's lists, with its columns, list and dict (no cycle can
        # pass through them: they hold floats, ints and tag tuples). Every services
        # checkpoint rewrites the running day of each changed service: at 4,000
        # services the young collection after it walked ~90,000 new objects, a third
        # of them these.
        fast = native.native
        if fast is not None:
            fast.untrack(self, self.ab, self.ix, self.tags, self._gx)

    def intern(self, tag: Tag) -> int:
        """The index of ``tag`` in the table, added if new."""
        i = self._gx.get(tag)
        if i is None:
            i = self._gx[tag] = len(self.tags)
            self.tags.append(tag)
        return i

    def append(self, run: Run) -> None:
        a, b, tag = run
        # + 0.0 makes -0.0 +0.0: equal times have equal bytes (``__eq__``; never NaN)
        self.ab.append(a + 0.0)
        self.ab.append(b + 0.0)
        self.ix.append(self.intern(tag))

    def __len__(self) -> int:
        return len(self.ix)

    def __getitem__(self, i: int) -> Run:
        if i < 0:
            i += len(self.ix)
        if not 0 <= i < len(self.ix):
            raise IndexError("run index out of range")
        return (self.ab[2 * i], self.ab[2 * i + 1], self.tags[self.ix[i]])

    def __setitem__(self, i: int, run: Run) -> None:
        if i < 0:
            i += len(self.ix)
        if not 0 <= i < len(self.ix):
            raise IndexError("run index out of range")
        a, b, tag = run
        self.ab[2 * i] = a + 0.0
        self.ab[2 * i + 1] = b + 0.0
        self.ix[i] = self.intern(tag)

    def __iter__(self) -> Iterator[Run]:
        ab, tags = self.ab, self.tags
        for i, g in enumerate(self.ix):
            yield (ab[2 * i], ab[2 * i + 1], tags[g])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Runs):
            # bytes, not floats: array('d') compares item by item, ~100x slower, and the
            # running day is compared with its last version at every checkpoint
            if len(self.ix) != len(other.ix) or self.ab.tobytes() != other.ab.tobytes():
                return False
            if self.tags == other.tags:
                return self.ix == other.ix
            return list(self) == list(other)
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Runs({list(self)!r})"

    def copy(self) -> Runs:
        out = Runs()
        out.ab = array("d", self.ab)
        out.ix = array("I", self.ix)
        out.tags = list(self.tags)
        out._gx = dict(self._gx)
        out._untrack()
        return out

    def to_obj(self, out: Packer | None = None) -> dict[str, Any]:
        """The table of blamed sets and the columns: their bytes added to ``out`` (a
        checkpoint record, ``streams/record.py``), or without it little-endian in base64."""
        ab, ix = self.ab, self.ix
        tags = self.tags[1:]  # tuples: orjson writes them as arrays
        if out is not None:
            return {"n": len(ix), "o": out.add(ab), "oi": out.add(ix), "t": tags}
        if sys.byteorder == "big":  # pragma: no cover - little-endian machines here
            ab, ix = array("d", ab), array("I", ix)
            ab.byteswap()
            ix.byteswap()
        return {"ab": base64.b64encode(ab).decode("ascii"),
                "ix": base64.b64encode(ix).decode("ascii"),
                "t": tags}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any], what: str, body: memoryview | None = None) -> Runs:
        """What ``to_obj`` gave; ``body`` the record's, when it was given a ``Packer``."""
        out = cls()
        try:
            if body is not None and "o" in obj:
                n = int(obj["n"])
                out.ab = column(body, "d", int(obj["o"]), 2 * n, f"day rollup {what}")
                out.ix = column(body, "I", int(obj["oi"]), n, f"day rollup {what}")
            else:
                out.ab.frombytes(base64.b64decode(obj["ab"]))
                out.ix.frombytes(base64.b64decode(obj["ix"]))
                if sys.byteorder == "big":  # pragma: no cover
                    out.ab.byteswap()
                    out.ix.byteswap()
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"day rollup {what}: its runs' columns are not readable: {e}") from e
        out.tags = [NO_TAG, *(tuple(map(sys.intern, t)) for t in obj.get("t", ()))]
        out._gx = {t: i for i, t in enumerate(out.tags)}
        out._untrack()
        if len(out.ab) != 2 * len(out.ix) or (out.ix and max(out.ix) >= len(out.tags)):
            raise ValueError(f"day rollup {what}: its runs' columns do not match")
        return out


@dataclass(slots=True)
class DayRollup:
    """The exact account of one local day over ``[start, covered)``; see the module."""

    day: str  # ISO date, local
    start: float
    end: float
    covered: float
    up: float = 0.0
    down: float = 0.0
    planned: float = 0.0
    #: Unplanned down runs inside service time, clipped to ``[start, covered)``:
    #: ``[a, b, blamed]`` in time order; runs that touch merge into one outage.
    runs: Runs = field(default_factory=Runs)
    blame: dict[str, float] = field(default_factory=dict)
    tail: Tail = NO_TAIL  # what holds at ``covered`` and after it
    #: Where a recomputation may resume (``Mark``s in time order), in memory only:
    #: neither stored nor compared. None for a rollup read from the store.
    marks: list[Mark] | None = field(default=None, compare=False, repr=False)

    def to_obj(self, out: Packer | None = None) -> dict[str, Any]:
        """The rollup as JSON-able values; its runs' columns go to ``out`` if given."""
        obj: dict[str, Any] = {"day": self.day, "s": self.start, "e": self.end,
                               "c": self.covered, "u": self.up, "d": self.down, "p": self.planned}
        if self.runs:
            obj["rc"] = self.runs.to_obj(out)
        if self.blame:
            obj["b"] = self.blame
        t = self.tail
        if t.state:
            obj["st"] = t.state
        if t.tag:
            obj["g"] = list(t.tag)
        if t.comps:
            obj["k"] = [[c, s] for c, s in t.comps]
        return obj

    @classmethod
    def from_obj(cls, day: str, obj: Mapping[str, Any], body: memoryview | None = None
                 ) -> DayRollup:
        return cls(day, float(obj["s"]), float(obj["e"]), float(obj["c"]), float(obj["u"]),
                   float(obj["d"]), float(obj["p"]),
                   # "r": the runs as a list of [a, b, blamed], as an older release stored them
                   Runs.from_obj(obj["rc"], day, body) if "rc" in obj
                   else Runs((float(a), float(b), tuple(t)) for a, b, t in obj.get("r", ())),
                   {str(k): float(v) for k, v in obj.get("b", {}).items()},
                   Tail(int(obj.get("st", UP)), tuple(obj.get("g", ())),
                        tuple((str(c), int(s)) for c, s in obj.get("k", ()))))


@dataclass(slots=True)
class Account:
    """Classified seconds of an interval: what a day (or a month) adds up to."""

    up: float = 0.0
    down: float = 0.0
    planned: float = 0.0
    runs: Runs = field(default_factory=Runs)
    blame: dict[str, float] = field(default_factory=dict)

    def add_pieces(self, pieces: Iterable[Piece]) -> None:
        runs, blame = self.runs, self.blame
        for a, b, state, tag in pieces:
            dt = b - a
            if dt <= 0:
                continue
            if state == UP:
                self.up += dt
            elif state == PLANNED:
                self.planned += dt
            elif state == DOWN:
                self.down += dt
                if tag:
                    share = dt / len(tag)
                    for comp in tag:
                        blame[comp] = blame.get(comp, 0.0) + share
                # runs[-1] and runs.append on the columns, without a method call a piece
                ab, ix = runs.ab, runs.ix
                if ix and ab[-1] == a:
                    rt = runs.tags[ix[-1]]
                    ab[-1] = b + 0.0
                    if not set(tag) <= set(rt):
                        ix[-1] = runs.intern(tuple(sorted(set(rt) | set(tag))))
                else:
                    ab.append(a + 0.0)
                    ab.append(b + 0.0)
                    ix.append(runs.intern(tuple(sorted(tag))))
            # OUTSIDE: neither up nor down, and it ends a run

    def add_view(self, view: Timeline, a: float, b: float, marks: list[Mark]) -> None:
        """``add_pieces(view.segments(a, b))``, noting a ``Mark`` in ``marks`` at every
        ``MARK_EVERY``-th point of ``view`` in ``(a, b)``."""
        ts = view.ts
        i = bisect_right(ts, a)
        j = bisect_left(ts, b)
        k = i + (-i) % MARK_EVERY
        at = a
        while k < j:
            t = ts[k]
            self.add_segments(view, at, t)
            marks.append(self.mark(t))
            at = t
            k += MARK_EVERY
        self.add_segments(view, at, b)

    def add_segments(self, view: Timeline, a: float, b: float) -> None:
        """``add_pieces(view.segments(a, b))`` over the view's columns: the same pieces in
        the same order, so the same sums, without a tuple a piece (the running day is
        recomputed at every services checkpoint)."""
        if b <= a:
            return
        ts, st, tg, table = view.ts, view.st, view.tag, view.tags
        runs = self.runs
        fast = native.native
        if fast is not None and type(table) is list:
            # The same loop in C (``_native.day_segments``): the same pieces, sums and runs.
            self.up, self.down, self.planned = fast.day_segments(
                ts, st, tg, table, a, b, self.up, self.down, self.planned, runs.ab, runs.ix,
                runs.tags, self.blame, lambda g: runs.intern(tuple(sorted(table[g]))),
                lambda rt, tag: runs.intern(tuple(sorted(set(rt) | set(tag)))))
            return
        n = len(ts)
        i = bisect_right(ts, a) - 1
        up, down, planned = self.up, self.down, self.planned
        if i < 0:
            first = ts[0] if n else math.inf
            if first > a:
                up += min(first, b) - a  # before the first point: up
            i = 0
        blame = self.blame
        ab, ix, rtags = runs.ab, runs.ix, runs.tags
        interned: dict[int, int] = {}  # the view's tag index -> the runs' (sorted)
        while i < n:
            lo = ts[i]
            if lo >= b:
                break
            if lo < a:
                lo = a
            hi = ts[i + 1] if i + 1 < n else b
            if hi > b:
                hi = b
            s = st[i]
            g = tg[i]
            i += 1
            dt = hi - lo
            if dt <= 0:
                continue
            if s == UP:
                up += dt
            elif s == PLANNED:
                planned += dt
            elif s == DOWN:
                down += dt
                tag = table[g]
                if tag:
                    share = dt / len(tag)
                    for comp in tag:
                        blame[comp] = blame.get(comp, 0.0) + share
                if ix and ab[-1] == lo:
                    rt = rtags[ix[-1]]
                    ab[-1] = hi + 0.0
                    if not set(tag) <= set(rt):
                        ix[-1] = runs.intern(tuple(sorted(set(rt) | set(tag))))
                else:
                    r = interned.get(g)
                    if r is None:
                        r = interned[g] = runs.intern(tuple(sorted(tag)))
                    ab.append(lo + 0.0)
                    ab.append(hi + 0.0)
                    ix.append(r)
            # OUTSIDE: neither up nor down, and it ends a run
        self.up, self.down, self.planned = up, down, planned

    def mark(self, t: float) -> Mark:
        runs = self.runs
        n = len(runs.ix)
        return (t, self.up, self.down, self.planned, n, runs.ab[-1] if n else 0.0,
                runs.ix[-1] if n else 0, len(runs.tags), array("d", self.blame.values()))

    @classmethod
    def at_mark(cls, r: DayRollup, m: Mark) -> Account:
        """The account of ``r``'s day up to ``m`` (one of ``r.marks``)."""
        _, up, down, planned, n, last_b, last_ix, ntags, values = m
        old = r.runs
        runs = Runs()
        runs.ab = old.ab[:2 * n]
        runs.ix = old.ix[:n]
        if n:
            runs.ab[-1] = last_b
            runs.ix[-1] = last_ix
        runs.tags = old.tags[:ntags]
        runs._gx = {g: i for i, g in enumerate(runs.tags)}
        runs._untrack()
        # The blame's keys only ever grow, in the order first blamed: a mark's values
        # are those of the first keys of the blame of the rollup it was taken for.
        blame = dict(zip(islice(r.blame, len(values)), values, strict=True))
        return cls(up, down, planned, runs, blame)

    def add_rollup(self, r: DayRollup) -> None:
        self.up += r.up
        self.down += r.down
        self.planned += r.planned
        for comp, s in r.blame.items():
            self.blame[comp] = self.blame.get(comp, 0.0) + s
        runs = self.runs
        for a, b, tag in r.runs:
            if runs and runs[-1][1] == a:
                ra, _, rt = runs[-1]
                runs[-1] = (ra, b, tuple(sorted(set(rt) | set(tag))))
            else:
                runs.append((a, b, tag))


def day_rollup(accounting: Accounting, view: Timeline, tracker: Any, d: date,
               covered_until: float, old: DayRollup | None = None,
               dirty: float = -math.inf) -> DayRollup:
    """The rollup of local day ``d``, covering up to ``covered_until`` (clipped to the
    day), from ``view`` (``accounting.view`` of ``tracker``, right over the day). With
    ``old``, the day's last rollup, and ``dirty``, the earliest instant a change since
    may touch, it resumes from the last of ``old.marks`` before ``dirty``."""
    zone = accounting.zone
    start, end = day_bounds(d, zone)
    covered = max(start, min(end, covered_until))
    marks: list[Mark] = []
    m = _mark_before(old, min(dirty, covered)) if old is not None else None
    if m is not None:
        assert old is not None and old.marks is not None
        acc = Account.at_mark(old, old.marks[m])
        marks += old.marks[:m + 1]
        acc.add_view(view, old.marks[m][0], covered, marks)
    else:
        acc = Account()
        acc.add_view(view, start, covered, marks)
    return DayRollup(d.isoformat(), start, end, covered, acc.up, acc.down, acc.planned,
                     acc.runs, acc.blame, tail_at(tracker, covered, accounting.needs_components),
                     _thinned(marks, covered >= end))


def _mark_before(r: DayRollup, t: float) -> int | None:
    """The index of the last of ``r.marks`` strictly before ``t``; None if none."""
    marks = r.marks
    if not marks:
        return None
    lo, hi = 0, len(marks)
    while lo < hi:  # bisect on the marks' times (a key= of bisect builds no list)
        mid = (lo + hi) // 2
        if marks[mid][0] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1 if lo else None


def _thinned(marks: list[Mark], done: bool) -> list[Mark] | None:
    """At most ``MARKS_KEPT`` of ``marks`` (``MARKS_KEPT_DONE`` once the day is over):
    the latest half as they are, those before halved until they fit."""
    keep = MARKS_KEPT_DONE if done else MARKS_KEPT
    if len(marks) > keep:
        if done:
            marks = marks[-keep:]
        else:
            half = keep // 2
            older = marks[:-half]
            while len(older) > keep - half:
                older = older[len(older) % 2::2]  # the last one stays
            marks = older + marks[-half:]
    return marks or None


def extend_rollup(accounting: Accounting, old: DayRollup, view: Timeline, tracker: Any,
                  covered_until: float) -> DayRollup:
    """``day_rollup`` of ``old``'s day when nothing changed before ``old.covered``: its
    account kept, the part after it added from ``view`` (the live path: a batch in time
    order costs its own points, not the day's)."""
    covered = max(old.covered, min(old.end, covered_until))
    acc = Account(old.up, old.down, old.planned, old.runs.copy(), dict(old.blame))
    marks = list(old.marks or ())
    acc.add_view(view, old.covered, covered, marks)
    return DayRollup(old.day, old.start, old.end, covered, acc.up, acc.down, acc.planned,
                     acc.runs, acc.blame, tail_at(tracker, covered, accounting.needs_components),
                     _thinned(marks, covered >= old.end))


def tail_at(tracker: Any, t: float, components: bool) -> Tail:
    """The ``Tail`` of ``tracker`` at ``t``."""
    if tracker is None:
        return NO_TAIL
    state, tag = tracker.timeline.point_at(t)
    comps: tuple[tuple[str, int], ...] = ()
    if components:
        comps = tuple(sorted((c, int(tl.state_at(t))) for c, tl in tracker.components.items()
                             if tl.state_at(t) != UP))
    return Tail(int(state), tuple(tag) if state == DOWN else NO_TAG, comps)


def days_between(a: float, b: float, zone: str) -> list[date]:
    """The local days that hold an instant of ``[a, b]``."""
    first, last = day_of(a, zone), day_of(b, zone)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# -- month rollups (what is stored) ------------------------------------------------------


@dataclass(slots=True)
class MonthRollup:
    """What one service's month holds besides its days: its revision history and the
    catalog's promise at its end.

    ``catalog`` is what the catalog said about the service at the last write before the
    month ended (target, kind, customers, restore_time, supported availability), so a
    closed month is reported against the promise in force at its end. ``revision``
    counts the writes, after the month ended, that changed its numbers (a late event
    correcting a closed day); ``revised_at`` is the last one's wall-clock time.
    """

    service: str
    period: str
    zone: str
    catalog: dict[str, Any] = field(default_factory=dict)
    revision: int = 0
    revised_at: float | None = None

    def to_obj(self) -> dict[str, Any]:
        return {"service": self.service, "period": self.period, "zone": self.zone,
                "catalog": self.catalog, "revision": self.revision,
                "revised_at": self.revised_at}

    @classmethod
    def from_obj(cls, obj: Mapping[str, Any]) -> MonthRollup:
        return cls(str(obj["service"]), str(obj["period"]), str(obj["zone"]),
                   dict(obj.get("catalog") or {}), int(obj.get("revision", 0)),
                   obj.get("revised_at"))


def is_revision(old: DayRollup | None, new: DayRollup, accounting: Accounting, *,
                dirty_from: float, known: float, now: float) -> bool:
    """Whether storing ``new`` over ``old`` revises a month that has ended (by ``now``):
    the day's numbers (carried to its end) changed, unless the change only brings
    history the service never had (a backfill: at or after ``known``, the newest instant
    covered before, and older than ``BACKFILL_AGE`` by the clock)."""
    if now < month_end_of(new.day, accounting.zone):
        return False
    if dirty_from >= known and now - dirty_from > BACKFILL_AGE:
        return False
    return old is None or _numbers(old, accounting) != _numbers(new, accounting)


def month_end_of(day: str, zone: str) -> float:
    return month_bounds(day[:7], zone)[1]


#: A change older than this by the clock, to history the service had not seen, is a
#: backfill, not a revision of a closed month.
BACKFILL_AGE = 86400.0


def _numbers(r: DayRollup, accounting: Accounting) -> tuple[Any, ...]:
    """What a day adds to its month's report: its account carried to the day's end."""
    acc = Account()
    acc.add_rollup(r)
    acc.add_pieces(accounting.carry(r.tail, r.covered, r.end))
    return (acc.up, acc.down, acc.planned, acc.runs, sorted(acc.blame.items()))


# -- reports ---------------------------------------------------------------------------


@dataclass(slots=True)
class ServiceInfo:
    """What a report says about the service itself, from a catalog."""

    name: str
    kind: str
    customers: tuple[str, ...]
    target: float
    restore_time: float | None
    supported: float
    components: tuple[str, ...]  # every component it requires (attribution keys)

    def to_obj(self) -> dict[str, Any]:
        return {"kind": self.kind, "customers": list(self.customers), "target": self.target,
                "restore_time": self.restore_time, "supported": self.supported}

    def with_snapshot(self, snap: Mapping[str, Any]) -> ServiceInfo:
        """The catalog's values at the period's end, where the rollups recorded them."""
        if not snap:
            return self
        return ServiceInfo(self.name, str(snap.get("kind", self.kind)),
                           tuple(snap.get("customers", self.customers)),
                           float(snap.get("target", self.target)),
                           snap.get("restore_time", self.restore_time),
                           float(snap.get("supported", self.supported)), self.components)


@dataclass(slots=True)
class Outage:
    start: float
    end: float | None  # None: still going on at the report's end
    seconds: float  # the whole outage (service-time seconds; it may reach out of the period)
    seconds_in_period: float
    components: Tag

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "seconds": self.seconds,
                "seconds_in_period": self.seconds_in_period, "components": list(self.components)}


@dataclass(slots=True)
class DayLine:
    day: str
    up: float
    down: float
    planned: float

    @property
    def availability(self) -> float:
        return sla.availability(self.up, self.down)

    def to_json(self) -> dict[str, Any]:
        return {"date": self.day, "up_seconds": self.up, "down_seconds": self.down,
                "planned_seconds": self.planned, "availability": self.availability}


@dataclass(slots=True)
class PeriodReport:
    info: ServiceInfo  # the service's kind, customers, target, ... at the period's end
    period: str
    zone: str
    start: float
    end: float  # the month's end, or the report's ``now`` for the running month
    closed: bool
    up: float
    down: float
    planned: float
    outages: list[Outage]
    downtime_by_component: dict[str, float]
    days: list[DayLine]
    revision: int = 0
    revised_at: float | None = None

    @property
    def availability(self) -> float:
        return sla.availability(self.up, self.down)

    @property
    def met(self) -> bool:
        return self.availability >= self.info.target

    @property
    def kpi_gap(self) -> bool:
        return self.info.supported < self.info.target

    @property
    def longest_outage_seconds(self) -> float:
        return max((o.seconds_in_period for o in self.outages), default=0.0)

    @property
    def restore_breaches(self) -> int:
        rt = self.info.restore_time
        return 0 if rt is None else sum(1 for o in self.outages if o.seconds > rt)

    def to_json(self) -> dict[str, Any]:
        """The §7 object (plus the outage list, the days and the revision)."""
        info = self.info
        return {
            "service": info.name,
            "kind": info.kind,
            "customers": list(info.customers),
            "period": self.period,
            "timezone": self.zone,
            "start": self.start,
            "end": self.end,
            "closed": self.closed,
            "target": info.target,
            "availability": self.availability,
            "met": self.met,
            "up_seconds": self.up,
            "down_seconds": self.down,
            "planned_seconds": self.planned,
            "outages": len(self.outages),
            "longest_outage_seconds": self.longest_outage_seconds,
            "restore_time_seconds": info.restore_time,
            "restore_breaches": self.restore_breaches,
            "downtime_by_component": self.downtime_by_component,
            "supported_availability": info.supported,
            "kpi_gap": self.kpi_gap,
            "revision": self.revision,
            "revised_at": self.revised_at,
            "outage_list": [o.to_json() for o in self.outages],
            "days": [d.to_json() for d in self.days],
        }


class History:
    """A service's day accounts from its stored day rollups, any day, with the carry rule.

    ``lookup(iso_day)`` gives a stored rollup or None; ``first`` is the first day that
    has one (None: none has), so carrying into a day looks back no further.
    """

    def __init__(self, accounting: Accounting, lookup: Callable[[str], DayRollup | None],
                 first: str | None, until: float) -> None:
        self.accounting = accounting
        self.zone = accounting.zone
        self.lookup = lookup
        self.first = first
        self.until = until  # nothing is known after this instant (the report's now)
        self._seen: dict[str, DayRollup | None] = {}

    def rollup(self, day: str) -> DayRollup | None:
        if day not in self._seen:
            self._seen[day] = self.lookup(day)
        return self._seen[day]

    def _carry_in(self, d: date) -> Tail:
        first = self.first
        if first is None:
            return NO_TAIL
        d -= timedelta(days=1)
        while d.isoformat() >= first:  # look back to the last day with a rollup
            r = self.rollup(d.isoformat())
            if r is not None:
                return r.tail
            d -= timedelta(days=1)
        return NO_TAIL  # no news is good news

    def account(self, d: date) -> Account | None:
        """The classified seconds of local day ``d`` up to ``until``; None after it."""
        start, end = day_bounds(d, self.zone)
        if start >= self.until:
            return None
        stop = min(end, self.until)
        acc = Account()
        r = self.rollup(d.isoformat())
        carry = self.accounting.carry
        if r is None:
            acc.add_pieces(carry(self._carry_in(d), start, stop))
        else:
            acc.add_rollup(r)
            if stop > r.covered:
                acc.add_pieces(carry(r.tail, r.covered, stop))
        return acc

    def down_at_until(self) -> bool:
        """Whether the service is in an unplanned outage at ``until`` itself. A run that
        reaches ``until`` ends there when the service day closes, a maintenance window
        opens or the service comes back exactly then (CONTRACT §6); the state at
        ``until`` is known, only what follows it is not."""
        t = self.until
        d = day_of(t, self.zone)
        r = self.rollup(d.isoformat())
        if r is None:
            tail = self._carry_in(d)
        elif r.covered <= t:
            tail = r.tail
        else:  # the day's rollup reaches past ``until``: its runs say how it goes on
            return True
        for _, _, state, _ in self.accounting.carry(tail, t, t + 1.0):
            return bool(state == DOWN)
        return False


#: An outage is followed at most this many days beyond the period it is reported in.
MAX_OUTAGE_DAYS = 400


def period_report(info: ServiceInfo, period: str, history: History, *,
                  month: MonthRollup | None = None) -> PeriodReport:
    """The report of ``period`` (``YYYY-MM`` in the accounting's zone) from ``history``.

    A month that has not ended by ``history.until`` is reported up to it (the running
    month so far). Outages that reach over the month's edges are followed into the days
    around it, so their whole length decides a restore breach; only their seconds in the
    month count in the month's numbers.
    """
    zone = history.zone
    start, end = month_bounds(period, zone)
    closed = end <= history.until
    if month is not None and month.catalog and closed:
        info = info.with_snapshot(month.catalog)
    total = Account()
    lines: list[DayLine] = []
    for d in month_days(period, zone):
        acc = history.account(d)
        if acc is None:
            break
        lines.append(DayLine(d.isoformat(), acc.up, acc.down, acc.planned))
        total.up += acc.up
        total.down += acc.down
        total.planned += acc.planned
        for comp, s in acc.blame.items():
            total.blame[comp] = total.blame.get(comp, 0.0) + s
        for run in acc.runs:
            _append_run(total.runs, run)
    outages = [_whole(run, history, start, min(end, history.until)) for run in total.runs]
    by_component = dict.fromkeys(info.components, 0.0)
    for comp in sorted(total.blame):
        by_component[comp] = by_component.get(comp, 0.0) + total.blame[comp]
    return PeriodReport(
        info=info, period=period, zone=zone, start=start, end=min(end, history.until),
        closed=closed, up=total.up, down=total.down, planned=total.planned, outages=outages,
        downtime_by_component=by_component, days=lines,
        revision=month.revision if month is not None else 0,
        revised_at=month.revised_at if month is not None else None,
    )


def _append_run(runs: Runs, run: Run) -> None:
    a, b, tag = run
    if runs and runs[-1][1] == a:
        ra, _, rt = runs[-1]
        runs[-1] = (ra, b, tuple(sorted(set(rt) | set(tag))))
    else:
        runs.append(run)


def _whole(run: tuple[float, float, Tag], history: History, lo: float, hi: float) -> Outage:
    """The outage a run of the month belongs to, followed over the month's edges."""
    a, b, tag = run
    blamed = set(tag)
    begin, finish = a, b
    zone = history.zone
    # Backwards while the run starts at a midnight and the day before ends down.
    steps = 0
    while begin == day_bounds(day_of(begin, zone), zone)[0] and begin <= lo and steps < MAX_OUTAGE_DAYS:
        prev = history.account(day_of(begin, zone) - timedelta(days=1))
        if prev is None or not prev.runs or prev.runs[-1][1] != begin:
            break
        begin = prev.runs[-1][0]
        blamed.update(prev.runs[-1][2])
        steps += 1
    ongoing = False
    steps = 0
    while finish >= hi and steps < MAX_OUTAGE_DAYS:
        if finish >= history.until:
            ongoing = history.down_at_until()
            break
        nxt = history.account(day_of(finish, zone))
        if nxt is None or not nxt.runs or nxt.runs[0][0] != finish:
            break
        finish = nxt.runs[0][1]
        blamed.update(nxt.runs[0][2])
        steps += 1
    return Outage(begin, None if ongoing else finish, finish - begin, b - a, tuple(sorted(blamed)))


__all__ = [
    "ALL_THE_TIME", "DOWN", "OUTSIDE", "PLANNED", "UP", "Account", "Accounting", "AllTheTime",
    "DayLine", "DayRollup", "History", "MonthRollup", "Outage", "PeriodReport", "Piece",
    "ServiceInfo", "day_bounds", "day_of", "day_rollup", "days_between", "month_bounds",
    "month_days", "next_period", "parse_period", "period_label", "period_report",
    "previous_period",
]


def service_info(catalog: Any, name: str) -> ServiceInfo | None:
    """The ``ServiceInfo`` of ``name`` in a ``streams.catalog.Catalog``; None if absent."""
    svc = catalog.services.get(name)
    if svc is None:
        return None
    return ServiceInfo(name, svc.kind, tuple(svc.customers), float(svc.target), svc.restore_time,
                       float(catalog.supported_availability(name)),
                       tuple(sorted(catalog.components_of(name))))


def service_accounting(catalog: Any, name: str) -> Accounting:
    """How ``name``'s seconds count under ``catalog``: 24×7 in UTC days unless a service
    time or a maintenance window applies to it (CONTRACT §6)."""
    cal = catalog.calendar(name) if name in catalog.services else None
    return ALL_THE_TIME if cal is None else Calendared(cal)

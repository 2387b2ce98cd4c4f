"""A step function of states over time, with exact integration over any interval.

Both component histories and service histories are step functions: a sorted list of
points ``(ts, state, tag)``, each holding from its ``ts`` until the next point; before
the first point the state is UP ("no news is good news"). Several points may share a
``ts``: the last one wins (callers keep them sorted by severity), and the others last
zero seconds, so they do not disturb the integral.

Integration uses prefix sums of up/down/maintenance seconds (and of down runs begun)
that are rebuilt lazily from the first modified index, so appending in time order costs
O(1) amortised, a late correction costs O(points after it), and any window is two binary
searches. The sums are kept at every ``BLOCK``-th point only (32 bytes a block, against
32 a point): the sum at point ``i`` is the kept one at its block's first point plus the
pieces after it, added one by one in the same order as the running sum added them, so it
is the same float, bit for bit (``sums_at``; in C ``_native.sums_at``).

Memory: a stored state change is a point in several timelines (the component's history,
each reading service's copy, the service's own), so the columns are flat arrays, not
lists of objects: times and prefix sums ``array('d')`` (8 bytes a point, against a list
slot and a 24-byte float), states ``array('b')`` (1 byte), the attribution index
``array('i')``/``array('d')``. Tags are interned per timeline: ``tag`` holds, per point,
the index of its tag in the timeline's table ``tags`` (``array('I')``, 4 bytes; 0 is
``NO_TAG``, so a component's history and copies, never tagged, share one table), which
also makes "same tag" an integer comparison. ``pack``/``unpack`` write and read the
columns as their bytes, for checkpoints (``streams/record.py``).
"""

from __future__ import annotations

import itertools
import math
import operator
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from streams.record import Packer, column
from streams.states import DOWN, MAINTENANCE, UP, State

Tag = tuple[str, ...]
NO_TAG: Tag = ()

_UP, _MAINT, _DOWN = int(UP), int(MAINTENANCE), int(DOWN)
_sub = operator.sub


def _accumulate(values: Iterable[Any], initial: Any) -> Iterator[Any]:
    """Running sums after ``initial`` (not including it)."""
    it = itertools.accumulate(values, initial=initial)
    next(it)
    return it


def float_column(values: Iterable[float] = ()) -> array[float]:
    """A column of times or sums: ``array('d')``."""
    return values if type(values) is array and values.typecode == "d" else array("d", values)


def state_column(values: Iterable[int] = ()) -> array[int]:
    """A column of states: ``array('b')``."""
    return values if type(values) is array and values.typecode == "b" else array("b", values)


#: Never mutated: the value of a Timeline's derived columns until they are first built.
_NONE_F: array[float] = array("d")
_NONE_ATT: dict[str, tuple[array[int], array[float]]] = {}
#: The tag table and its index of an untagged timeline, shared until a tag comes.
#: New empty columns: copying an empty array skips array()'s argument parsing (a new
#: timeline's three columns cost 1.7 of its 2.2 µs; 64,000 of them are made at first
#: touch of 20,000 components feeding 4,000 services).
_new_floats = array("d").__copy__
_new_states = array("b").__copy__
_new_tags = array("I").__copy__
_NO_TAGS: list[Tag] = [NO_TAG]
_NO_TAG_INDEX: dict[Tag, int] = {NO_TAG: 0}


def tag_column(values: Iterable[int] = ()) -> array[int]:
    """A column of tag indexes: ``array('I')``."""
    return values if type(values) is array and values.typecode == "I" else array("I", values)

#: ``_STATE[i] is State(i)``, without the cost of ``EnumMeta.__call__``.
_STATE = (UP, MAINTENANCE, DOWN)
assert all(_STATE[int(s)] is s for s in State)


#: Prefix sums are kept at the points whose index is a multiple of ``BLOCK``.
SHIFT = 5
BLOCK = 1 << SHIFT
#: The attribution index keeps a component's running sum at every ``ATT_BLOCK``-th of
#: its pieces (a query adds at most ATT_BLOCK - 1 shares, in Python: kept short).
ATT_SHIFT = 3
ATT_BLOCK = 1 << ATT_SHIFT
ATT_MASK = ATT_BLOCK - 1
#: Values per kept point in ``Timeline._sums``: up, down and maintenance seconds before
#: the point, and the down runs begun at or before it (an integer, exact as a float).
_SUMS = 4


def _extend_sums(ts: Sequence[float], st: Sequence[int], sums: array[float]) -> None:
    """Append to ``sums`` the kept sums of the blocks after its last one, up to the block
    of the last point (``_native.sums_extend``'s twin)."""
    n = len(ts)
    k = len(sums) // _SUMS
    if not n:
        return
    if k == 0:
        sums.extend((0.0, 0.0, 0.0, 1.0 if st[0] == _DOWN else 0.0))
        k = 1
    need = (n + BLOCK - 1) >> SHIFT
    if k >= need:
        return
    v = (k - 1) << SHIFT  # the last kept point
    hi = (need - 1) << SHIFT  # the last point to keep
    b = _SUMS * (k - 1)
    # The running sums from point v to hi, the same additions in the same order as a
    # loop would make them (accumulate adds left to right), a column at a time.
    prev = st[v:hi]
    dts = list(map(_sub, ts[v + 1:hi + 1], ts[v:hi]))
    cols = [
        list(_accumulate([d if p == want else 0.0 for d, p in zip(dts, prev, strict=True)],
                         initial=sums[b + c]))[BLOCK - 1::BLOCK]
        for c, want in enumerate((_UP, _DOWN, _MAINT))
    ]
    runs = list(_accumulate([1 if s == _DOWN and p != _DOWN else 0
                             for s, p in zip(st[v + 1:hi + 1], prev, strict=True)],
                            initial=int(sums[b + 3])))[BLOCK - 1::BLOCK]
    sums.extend(itertools.chain.from_iterable(zip(*cols, map(float, runs), strict=True)))


def _sums_at(ts: Sequence[float], st: Sequence[int], sums: Sequence[float], i: int
             ) -> tuple[float, float, float, float]:
    """The prefix sums at point ``i`` (``_native.sums_at``'s twin): up, down and
    maintenance seconds before it, down runs begun at or before it. ``sums`` must hold
    the kept ones up to ``i``'s block, unless that is the first."""
    k = i >> SHIFT
    j = k << SHIFT
    if k:
        b = _SUMS * k
        u, d, m, r = sums[b], sums[b + 1], sums[b + 2], sums[b + 3]
    else:
        u = d = m = 0.0
        r = 1.0 if st[0] == _DOWN else 0.0
    prev = ts[j]
    p = st[j]
    for q in range(j + 1, i + 1):
        t = ts[q]
        dt = t - prev
        u = u + (dt if p == _UP else 0.0)
        d = d + (dt if p == _DOWN else 0.0)
        m = m + (dt if p == _MAINT else 0.0)
        s = st[q]
        if s == _DOWN and p != _DOWN:
            r += 1.0
        prev = t
        p = s
    return u, d, m, r


class Timeline:
    __slots__ = ("_att", "_att_n", "_gen", "_gx", "_low", "_sums", "_valid", "_valid3", "st",
                 "tag", "tags", "ts")

    def __init__(
        self,
        ts: Iterable[float] | None = None,
        st: Iterable[int] | None = None,
        tag: list[Tag] | None = None,
    ) -> None:
        # An array passed in is adopted, not copied (as lists were).
        self.ts: array[float] = float_column(ts) if ts is not None else _new_floats()
        self.st: array[int] = state_column(st) if st is not None else _new_states()
        self.tags: list[Tag] = _NO_TAGS  # the tag of index i (0: NO_TAG)
        self._gx: dict[Tag, int] = _NO_TAG_INDEX  # the index of each tag in ``tags``
        self.tag: array[int] = (tag_column(map(self.intern, tag)) if tag is not None
                                else array("I", bytes(4 * len(self.ts))) if self.ts
                                else _new_tags())
        # Prefix sums and the attribution index are allocated when first built (most
        # timelines never need them): until then they are the shared empties.
        self._sums: array[float] = _NONE_F  # _SUMS values per kept point (see BLOCK)
        self._valid = 0  # the sums kept are right for indexes < _valid
        # Attribution of down seconds (``attribute``): per blamed component, the indexes of
        # the closed pieces that blame it and the running sum of its shares of them (kept
        # at every ATT_BLOCK-th piece, see _att_cum).
        self._att: dict[str, tuple[array[int], array[float]]] = _NONE_ATT
        self._att_n = 0  # pieces indexed so far
        self._valid3 = 0  # pieces before this index are indexed right
        # Counts the edits other than appends (every one passes ``_touched``): with the
        # length it tells a reader whether the function changed since it last looked.
        self._gen = 0
        # Points before ``_low`` (and the tag table, unless ``_low`` is 0) are as the
        # checkpoint writer last stored them: it sets ``_low`` to the length after each
        # write (agents/worker/patchlog.py), every edit but an append lowers it to the
        # index it touched, and appends leave it, so a checkpoint sends the columns
        # from ``_low`` on and the tags added. 0: nothing is known written.
        self._low = 0
        # Off the cyclic collector's lists (a timeline and its arrays cannot be part of a
        # reference cycle: reference counting frees them). A worker holds several per
        # component (its history and each reading service's copy, four GC objects each),
        # and every collection walked them: at 20,000 components they were most of
        # the heap, and the collections made at their creation a third of the CPU.
        fast = _nm.native
        if fast is not None:
            fast.untrack(self, self.ts, self.st, self.tag)

    def __len__(self) -> int:
        return len(self.ts)

    def intern(self, tag: Tag) -> int:
        """The index of ``tag`` in this timeline's table, added if new."""
        if not tag:
            return 0
        i = self._gx.get(tag)
        if i is None:
            if self._gx is _NO_TAG_INDEX:
                self._gx = {NO_TAG: 0}
                self.tags = [NO_TAG]
            i = self._gx[tag] = len(self.tags)
            self.tags.append(tag)
        return i

    def tag_at(self, i: int) -> Tag:
        return self.tags[self.tag[i]]

    def tag_list(self) -> list[Tag]:
        """Every point's tag, in order."""
        return list(map(self.tags.__getitem__, self.tag))

    @property
    def last_state(self) -> State:
        return _STATE[self.st[-1]] if self.st else UP

    @property
    def last_ts(self) -> float:
        return self.ts[-1] if self.ts else -math.inf

    def state_at(self, t: float) -> State:
        i = bisect_right(self.ts, t) - 1
        return _STATE[self.st[i]] if i >= 0 else UP

    def point_at(self, t: float) -> tuple[State, Tag]:
        i = bisect_right(self.ts, t) - 1
        return (_STATE[self.st[i]], self.tags[self.tag[i]]) if i >= 0 else (UP, NO_TAG)

    def next_after(self, t: float) -> float:
        """The first point strictly after ``t`` (where the value at ``t`` stops holding)."""
        i = bisect_right(self.ts, t)
        return self.ts[i] if i < len(self.ts) else math.inf

    def points_between(self, start: float, end: float) -> Sequence[float]:
        """Point times in the open interval (start, end)."""
        return self.ts[bisect_right(self.ts, start) : bisect_left(self.ts, end)]

    # -- editing -----------------------------------------------------------------------

    def _touched(self, index: int) -> None:
        self._gen += 1
        if index < self._low:
            self._low = index
        if index < self._valid:
            self._valid = index
        if index <= self._valid3:  # piece index - 1 ends at point index
            self._valid3 = index - 1 if index > 0 else 0

    def append_state(self, t: float, st: int, tag: Tag = NO_TAG) -> bool:
        """Set the value from ``t`` on, for ``t`` at or after the last point.

        Returns whether the function changed. This is the in-order fast path.
        """
        return self.append_indexed(t, st, self.intern(tag))

    def append_indexed(self, t: float, st: int, tag: int) -> bool:
        """``append_state`` of a tag given as its index in ``tags``."""
        ts = self.ts
        if ts and ts[-1] == t:
            n = len(ts) - 1
            prev_st, prev_tag = (self.st[n - 1], self.tag[n - 1]) if n > 0 else (UP, 0)
            if self.st[n] == st and self.tag[n] == tag:
                return False
            self._touched(n)
            if prev_st == st and prev_tag == tag:
                del ts[n], self.st[n], self.tag[n]
            else:
                self.st[n] = st
                self.tag[n] = tag
            return True
        if self.st:
            if self.st[-1] == st and self.tag[-1] == tag:
                return False
        elif st == UP and not tag:
            return False
        ts.append(t)
        self.st.append(st)
        self.tag.append(tag)
        return True

    def assign(self, start: float, end: float, points: Sequence[tuple[float, int, Tag]]) -> None:
        """Replace the function on [start, end) by ``points`` (the first at ``start``).

        The value the function had at ``end`` keeps holding from ``end`` on. Redundant
        points at the edges are merged away so equal functions have equal point lists.
        """
        self.assign_columns(start, end, [p[0] for p in points], [p[1] for p in points],
                            list(map(self.intern, [p[2] for p in points])))

    def assign_columns(self, start: float, end: float, pts: Iterable[float],
                       psts: Iterable[int], ptags: Sequence[int]) -> None:
        """``assign`` of points given as columns, which must hold no redundant point
        between their first and last (each differs from the one before): only the edges
        are merged, so a long re-evaluation is spliced in without a pass over it. Tags
        are given as their indexes (``intern``)."""
        ts, st, tag = self.ts, self.st, self.tag
        if end != math.inf:
            j = bisect_left(ts, end)
            if j == len(ts) or ts[j] != end:
                # Materialise the value at `end` before the interval is overwritten.
                k = j - 1
                old = (st[k], tag[k]) if k >= 0 else (UP, 0)
                ts.insert(j, end)
                st.insert(j, old[0])
                tag.insert(j, old[1])
        else:
            j = len(ts)
        i = bisect_left(ts, start)
        ts[i:j] = float_column(pts)
        st[i:j] = state_column(psts)
        tag[i:j] = tag_column(ptags)
        # Merge redundant points at the far edge first (indexes below stay put), then
        # from just before `start` to the first point.
        after = i + len(ptags)
        self._dedupe(after, after + 1)
        self._dedupe(max(0, i - 1), i + 1)

    def assign_tagged(self, start: float, end: float, pts: Iterable[float],
                      psts: Iterable[int], ptags: Iterable[Tag]) -> None:
        """``assign_columns`` of tags given as tuples."""
        self.assign_columns(start, end, pts, psts, list(map(self.intern, ptags)))

    def _dedupe(self, lo: int, hi: int) -> None:
        ts, st, tag = self.ts, self.st, self.tag
        k = max(lo, 0)
        while k < min(hi, len(ts)):
            if k == 0:
                redundant = st[0] == UP and not tag[0]
            else:
                redundant = st[k] == st[k - 1] and tag[k] == tag[k - 1] and ts[k] != ts[k - 1]
            if redundant:
                del ts[k], st[k], tag[k]
                hi -= 1
            else:
                k += 1
        self._touched(max(0, lo - 1))

    def prune_before(self, cut: float) -> int:
        """Forget points that no query from ``cut`` on can see; returns how many went.

        The point in force at ``cut`` stays (with its original time), so the value on
        [cut, ...) and the start of an ongoing run are unchanged.
        """
        i = bisect_right(self.ts, cut) - 1
        if i > 0:
            del self.ts[:i], self.st[:i], self.tag[:i]
            self._touched(0)
        # Also when no point went: a re-evaluation may have replaced the last users of
        # some tags since the last prune.
        self.compact_tags()
        return max(i, 0)

    # -- integration -------------------------------------------------------------------

    def _build(self) -> None:
        """Bring the kept prefix sums (``_sums``) up to date."""
        n = len(self.ts)
        need = _SUMS * ((n + BLOCK - 1) >> SHIFT)
        sums = self._sums
        if self._valid >= n and len(sums) == need:
            return
        if sums is _NONE_F:
            sums = self._sums = array("d")
        # The point kept at k * BLOCK is right while it is below _valid.
        del sums[_SUMS * ((min(self._valid, n) + BLOCK - 1) >> SHIFT):]
        fast = _nm.native
        if fast is not None:
            sums.frombytes(fast.sums_extend(self.ts, self.st, sums))
        else:
            _extend_sums(self.ts, self.st, sums)
        self._valid = n

    def warm(self, attribution: bool) -> None:
        """Build now what reads build when first asked and keep until the timeline
        changes: the prefix sums, and the attribution index if ``attribution``."""
        self._build()
        if attribution and self.ts:
            self._build_attribution()

    def sums_at(self, i: int) -> tuple[float, float, float, float]:
        """The prefix sums at point ``i`` (0 <= i < len): seconds up, down and in
        maintenance before it, and down runs begun at or before it (a float)."""
        if i >= BLOCK and i >= self._valid:
            self._build()
        fast = _nm.native
        if fast is not None:
            return fast.sums_at(self.ts, self.st, self._sums, i)  # type: ignore[no-any-return]
        return _sums_at(self.ts, self.st, self._sums, i)

    def _cumulative(self, x: float) -> tuple[float, float, float]:
        ts = self.ts
        if not ts or x < ts[0]:
            return (x - (ts[0] if ts else 0.0), 0.0, 0.0)
        i = bisect_right(ts, x) - 1
        dt = x - ts[i]
        s = self.st[i]
        u, d, m, _ = self.sums_at(i)
        return (
            u + (dt if s == UP else 0.0),
            d + (dt if s == DOWN else 0.0),
            m + (dt if s == MAINTENANCE else 0.0),
        )

    def totals(self, start: float, end: float) -> tuple[float, float, float]:
        """Seconds (up, down, maintenance) in [start, end]."""
        if end <= start:
            return (0.0, 0.0, 0.0)
        a = self._cumulative(start)
        b = self._cumulative(end)
        return (b[0] - a[0], b[1] - a[1], b[2] - a[2])

    def _share(self, i: int) -> float:
        """A blamed component's seconds of the closed down piece ``i``."""
        ts = self.ts
        return (ts[i + 1] - ts[i]) / len(self.tags[self.tag[i]])

    def _att_cum(self, idx: array[int], cum: array[float], e: int) -> float:
        """The running sum of a component's shares of its first ``e`` pieces in ``idx``:
        kept at every ``ATT_BLOCK``-th, the rest added on in the order the index added
        them (the same float)."""
        if e == len(idx):
            return cum[-1]
        k = e >> ATT_SHIFT
        total = cum[k]
        share = self._share
        for q in range(k << ATT_SHIFT, e):
            total = total + share(idx[q])
        return total

    def _build_attribution(self) -> None:
        closed = len(self.ts) - 1  # the last piece has no end yet
        v = self._valid3
        att = self._att
        if att is _NONE_ATT:
            att = self._att = {}
        if self._att_n > v:  # forget the pieces from v on
            for idx, cum in att.values():
                k = bisect_left(idx, v)
                total = self._att_cum(idx, cum, k)
                del idx[k:], cum[(k >> ATT_SHIFT) + 1:]
                if k & ATT_MASK:
                    cum.append(total)
            self._att_n = v
        if closed > v:
            fast = _nm.native
            if fast is not None:
                # A service's whole index is built at its first report after a
                # backlog: 10,000 services were ~0.2 s of such a scrape in Python.
                fast.att_extend(att, v, closed, self.ts, self.st, self.tag, self.tags)
            else:
                self._att_extend(v, closed)
            self._att_n = self._valid3 = closed

    def _att_extend(self, v: int, closed: int) -> None:
        """Add the closed pieces ``v .. closed - 1`` to the attribution index
        (``_native.att_extend``'s twin)."""
        ts, st, tix, table, att = self.ts, self.st, self.tag, self.tags, self._att
        for i in range(v, closed):
            if st[i] == _DOWN and ts[i + 1] > ts[i]:
                g = tix[i]
                if g:
                    tag = table[g]
                    share = (ts[i + 1] - ts[i]) / len(tag)
                    for comp in tag:
                        entry = att.get(comp)
                        if entry is None:
                            entry = att[comp] = (array("i"), array("d", (0.0,)))
                        idx, cum = entry
                        # cum: the sums at entries 0, ATT_BLOCK, 2 * ATT_BLOCK, ..., then
                        # the running total when the count is not a multiple of it.
                        total = cum[-1] + share
                        if len(idx) & ATT_MASK:
                            cum[-1] = total
                        else:
                            cum.append(total)
                        idx.append(i)

    def attribute(self, start: float, end: float, out: dict[str, float]) -> None:
        """Add each blamed component's share of the down seconds in [start, end] to ``out``.

        Each second of a down piece is split equally among its tag. Whole pieces come from
        running sums per component (two binary searches each); the pieces cut by ``start``
        and ``end`` are added directly.
        """
        if end <= start or not self.ts:
            return
        self._build_attribution()
        ts, st, table, tix = self.ts, self.st, self.tags, self.tag
        lo = bisect_left(ts, start)  # first piece starting at or after start
        hi = bisect_right(ts, end) - 1  # the piece that holds end
        if hi < 0:
            return  # before the first point: up
        if lo > hi:  # start and end inside one piece
            i = hi
            if st[i] == _DOWN and tix[i]:
                tag = table[tix[i]]
                share = (end - start) / len(tag)
                for comp in tag:
                    out[comp] = out.get(comp, 0.0) + share
            return
        if lo > 0 and ts[lo] > start and st[lo - 1] == _DOWN and tix[lo - 1]:  # cut by start
            tag = table[tix[lo - 1]]
            share = (ts[lo] - start) / len(tag)
            for comp in tag:
                out[comp] = out.get(comp, 0.0) + share
        if hi > lo:  # whole pieces lo .. hi-1 (all closed: hi <= n - 1)
            fast = _nm.native
            if fast is not None:
                fast.att_whole(self._att, lo, hi, ts, tix, table, out)
            else:
                self._att_whole(lo, hi, out)
        if end > ts[hi] and st[hi] == _DOWN and tix[hi]:  # the piece that holds end
            tag = table[tix[hi]]
            share = (end - ts[hi]) / len(tag)
            for comp in tag:
                out[comp] = out.get(comp, 0.0) + share

    def _att_whole(self, lo: int, hi: int, out: dict[str, float]) -> None:
        """Add each blamed component's shares of the whole pieces ``lo .. hi - 1`` to
        ``out``, from the attribution index (``_native.att_whole``'s twin)."""
        at = self._att_cum
        for comp, (idx, cum) in self._att.items():
            a = bisect_left(idx, lo)
            b = bisect_left(idx, hi, a)
            if b > a:
                out[comp] = out.get(comp, 0.0) + (at(idx, cum, b) - at(idx, cum, a))

    def up_down(self, start: float, end: float) -> tuple[float, float]:
        """Seconds (up, down) in [start, end]: ``totals`` without maintenance, the same floats."""
        if end <= start:
            return (0.0, 0.0)
        ts, st = self.ts, self.st
        out = []
        for x in (start, end):
            if not ts or x < ts[0]:
                out.append((x - (ts[0] if ts else 0.0), 0.0))
                continue
            i = bisect_right(ts, x) - 1
            dt = x - ts[i]
            s = st[i]
            u, d, _, _ = self.sums_at(i)
            out.append((u + (dt if s == _UP else 0.0), d + (dt if s == _DOWN else 0.0)))
        (au, ad), (bu, bd) = out
        return (bu - au, bd - ad)

    def window_totals(self, now: float, sizes: Sequence[float]) -> list[tuple[float, float, float]]:
        """(up, down, maintenance) seconds in [now - size, now] for each size, in one go."""
        if not self.ts:
            return [(size, 0.0, 0.0) for size in sizes]
        b = self._cumulative(now)
        out = []
        for size in sizes:
            a = self._cumulative(now - size)
            out.append((b[0] - a[0], b[1] - a[1], b[2] - a[2]))
        return out

    def outage_counters(self, now: float) -> tuple[int, float, float]:
        """(down runs begun, down seconds of runs ended, length of the current run) at ``now``.

        O(log n + BLOCK) from the prefix sums: the ended runs' seconds are all down seconds up
        to ``now`` minus the part of the run still going on.
        """
        ts = self.ts
        i = bisect_right(ts, now) - 1
        if i < 0:
            return 0, 0.0, 0.0
        st = self.st
        down_total = self._cumulative(now)[1] - self._cumulative(ts[0])[1]
        current = 0.0
        if st[i] == DOWN:
            j = i
            while j > 0 and st[j - 1] == DOWN:
                j -= 1
            current = now - ts[j]
        return int(self.sums_at(i)[3]), down_total - current, current

    def down_points(self, start: float, end: float) -> Iterator[tuple[float, float, Tag]]:
        """Pieces (from, to, tag) of `down` within [start, end]."""
        for a, b, state, tag in self.segments(start, end):
            if state == DOWN:
                yield a, b, tag

    def segments(self, start: float, end: float) -> Iterator[tuple[float, float, int, Tag]]:
        """The pieces (from, to, state, tag) of the function clipped to [start, end]."""
        if end <= start:
            return
        ts, st, tag, table = self.ts, self.st, self.tag, self.tags
        i = bisect_right(ts, start) - 1
        if i < 0:
            first = ts[0] if ts else math.inf
            if first > start:
                yield (start, min(first, end), UP, NO_TAG)
            i = 0
        n = len(ts)
        while i < n and ts[i] < end:
            a = max(ts[i], start)
            b = min(ts[i + 1], end) if i + 1 < n else end
            if b > a:
                yield (a, b, st[i], table[tag[i]])
            i += 1

    # -- persistence ---------------------------------------------------------------------

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"t": self.ts.tolist(), "s": self.st.tolist()}
        if any(self.tag):
            obj["g"] = [list(t) for t in self.tag_list()]
        return obj

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Timeline:
        tags = obj.get("g")
        return cls(
            obj["t"],
            obj["s"],
            [tuple(t) for t in tags] if tags is not None else None,
        )

    def compact_tags(self) -> None:
        """Drop the tags no point uses any more from the table (at every prune; points a
        re-evaluation replaced leave theirs until then): the table stays bounded by the
        history kept. Counting the tags in use is one pass over the index column (in C
        when built); the table is rebuilt only when some tag went."""
        table = self.tags
        if len(table) <= 1:
            return
        fast = _nm.native
        if fast is not None:
            if fast.tags_used(self.tag, len(table)) == len(table):
                return
            used = set(self.tag)
        else:
            used = set(self.tag)
            used.add(0)
            if len(used) == len(table):
                return
        used.add(0)
        keep = sorted(used)
        self._low = 0  # the table is renumbered: written again whole
        new = {old: i for i, old in enumerate(keep)}
        self.tag = array("I", map(new.__getitem__, self.tag))
        self.tags = [table[g] for g in keep]
        self._gx = {t: i for i, t in enumerate(self.tags)}

    def pack(self, out: Packer) -> dict[str, Any]:
        """This timeline's part of a record header; its columns go to ``out``.

        The tag table is written once (without ``NO_TAG``, index 0) and the indexes
        per point (``u4``), when the table holds a tag (``prune_before`` drops the ones
        no point uses any more).
        """
        meta: dict[str, Any] = {"n": len(self.ts), "o": out.add_timeline(self)}
        if len(self.tags) > 1:  # some point had a tag since the last prune
            out.add(self.tag)
            out.tag_table(meta, self)
        return meta

    @staticmethod
    def pack_all(timelines: Mapping[str, Timeline], out: Packer) -> dict[str, dict[str, Any]]:
        """``{name: tl.pack(out)}``: a service's record holds one timeline per component
        it reads, and those never carry tags, so their part is made here without a call
        to ``pack`` each."""
        add = out.add_timeline
        metas: dict[str, dict[str, Any]] = {}
        for name, tl in timelines.items():
            if len(tl.tags) > 1:
                metas[name] = tl.pack(out)
            else:
                metas[name] = {"n": len(tl.ts), "o": add(tl)}
        return metas

    @classmethod
    def unpack(cls, meta: dict[str, Any], body: memoryview, what: str) -> Timeline:
        """The timeline ``pack`` wrote: ``meta`` its header part, ``body`` the record's."""
        n, at = int(meta["n"]), int(meta["o"])
        tl = cls(column(body, "d", at, n, what), column(body, "b", at + 8 * n, n, what))
        names = meta.get("g")
        if names is not None:
            ix = column(body, "I", at + 9 * n, n, what)
            tags: list[Tag] = [NO_TAG, *(tuple(map(sys.intern, t)) for t in names)]
            fast = _nm.native
            if fast is not None:
                fast.untrack(*tags)  # tuples of strings (see _native.c plan_blame_tag)
            if ix and max(ix) >= len(tags):
                raise ValueError(f"{what}: a tag index is out of its table")
            tl.tag = ix
            tl.tags = tags
            tl._gx = {t: i for i, t in enumerate(tags)}
            if len(tl._gx) != len(tags):
                raise ValueError(f"{what}: a tag is in its table twice")
        tl._low = n  # as stored (see ``_low``)
        return tl


# At the end: streams.native imports this module (for Timeline), and the sums above read
# its ``native`` at each call (the tests switch it off and on).
from streams import native as _nm  # noqa: E402


def new_timeline() -> Timeline:
    """``Timeline()``, made in C when the extension is loaded (``_native.new_timeline``:
    the same slots, taken from a ``Timeline()``): a storm's first touch makes one per
    component and per service copy, tens of thousands, and ``__init__`` is most of what
    each costs."""
    fast = _nm.native
    return fast.new_timeline() if fast is not None else Timeline()

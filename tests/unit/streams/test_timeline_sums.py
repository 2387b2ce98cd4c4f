"""Prefix sums kept at every ``BLOCK``-th point give the floats of a sum kept at every point.

``Timeline`` keeps its running sums (up, down and maintenance seconds, down runs begun)
only at the first point of each block and adds the pieces after it when a point inside
is asked for. The definition is the running sum over every point, added left to right;
the numbers a user reads are differences of those sums, so every float must be the same
bit for bit (``float.hex``), through appends, late corrections, re-evaluations and
prunes, on the C twins (``_native.sums_extend``/``sums_at``) and on the Python ones.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import native
from streams.accounting import OUTSIDE
from streams.report import _WINDOW_NAMES, window_availability, window_availability_many
from streams.states import DOWN, MAINTENANCE, UP, State
from streams.timeline import _SUMS, ATT_BLOCK, BLOCK, Timeline, _extend_sums, _sums_at

pytestmark = pytest.mark.usefixtures("engine_path")

STATES = (UP, MAINTENANCE, DOWN)
NOW = 1_709_251_200.0


def _running(tl: Timeline) -> list[tuple[str, str, str, int]]:
    """The definition: the sums at every point, added left to right from 0.0."""
    ts, sts = tl.ts, tl.st
    out = []
    u = d = m = 0.0
    r = 0
    for i in range(len(ts)):
        if i:
            dt = ts[i] - ts[i - 1]
            p = sts[i - 1]
            u = u + (dt if p == int(UP) else 0.0)
            d = d + (dt if p == int(DOWN) else 0.0)
            m = m + (dt if p == int(MAINTENANCE) else 0.0)
        if sts[i] == int(DOWN) and (i == 0 or sts[i - 1] != int(DOWN)):
            r += 1
        out.append((u.hex(), d.hex(), m.hex(), r))
    return out


def _asked(tl: Timeline) -> list[tuple[str, str, str, int]]:
    out = []
    for i in range(len(tl)):
        u, d, m, r = tl.sums_at(i)
        assert r == int(r)
        out.append((u.hex(), d.hex(), m.hex(), int(r)))
    return out


_times = st.floats(0.0, 1e6, allow_nan=False) | st.sampled_from((0.0, 0.1, 1.0, 1e-300, 2.5))
_tags = st.sampled_from(((), ("a",), ("b",), ("a", "b")))
_edit = st.tuples(
    st.sampled_from(("append", "append", "append", "assign", "prune", "ask")),
    _times, st.integers(1, 3 * BLOCK), st.sampled_from(STATES), _tags, st.integers(0, 400))


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(_edit, max_size=40))
def test_sums_at_every_point_equal_the_running_sums(
        edits: list[tuple[str, float, int, State, tuple[str, ...], int]]) -> None:
    tl = Timeline()
    t = 1_000.0
    for op, step, count, state, tag, where in edits:
        tag = tag if state == DOWN else ()
        if op == "append":  # a run of in-order points, ties included
            t = max(t, tl.ts[-1]) if tl.ts else t  # an assign may have ended past t
            for k in range(count):
                t += step * (k % 3 != 0)
                tl.append_state(t, int(STATES[(int(state) + k) % 3]), tag)
        elif op == "assign" and tl.ts:  # a late correction somewhere inside
            at = tl.ts[where % len(tl)]
            tl.assign(at, at + step if step else math.inf, [(at, int(state), tag)])
        elif op == "prune" and tl.ts:
            tl.prune_before(tl.ts[where % len(tl)])
        elif op == "ask" and tl.ts:  # build the sums part way, to be extended later
            tl.sums_at(where % len(tl))
        assert _asked(tl) == _running(tl)


@settings(max_examples=150, deadline=None)
@given(points=st.lists(st.tuples(_times, st.sampled_from((*STATES, OUTSIDE))),
                       max_size=6 * BLOCK),
       kept=st.integers(0, 8))
def test_c_and_python_twins_agree(points: list[tuple[float, int]], kept: int) -> None:
    """The C and Python twins on the same columns, from any number of blocks kept; the
    accounted timelines' OUTSIDE (3) counts in no sum."""
    fast = native.native
    if fast is None:
        pytest.skip("the Python path has no twin to compare with")
    t = 0.0
    ts, sts = array("d"), array("b")
    for step, state in points:
        t += step
        ts.append(t)
        sts.append(int(state))
    full: array[float] = array("d")
    _extend_sums(ts, sts, full)
    assert bytes(fast.sums_extend(ts, sts, array("d"))) == full.tobytes()
    part = full[:_SUMS * min(kept, len(full) // _SUMS)]
    grown = array("d", part)
    _extend_sums(ts, sts, grown)
    assert grown.tobytes() == full.tobytes()
    assert bytes(part.tobytes() + fast.sums_extend(ts, sts, part)) == full.tobytes()
    for i in range(len(ts)):
        assert [x.hex() for x in fast.sums_at(ts, sts, full, i)] == \
            [x.hex() for x in _sums_at(ts, sts, full, i)]
    tl = Timeline(ts, sts)
    assert _asked(tl) == _running(tl)


@settings(max_examples=100, deadline=None)
@given(points=st.lists(st.tuples(st.floats(0.0, 86400.0, allow_nan=False),
                                 st.sampled_from(STATES)), max_size=5 * BLOCK),
       later=st.floats(0.0, 40 * 86400.0, allow_nan=False))
def test_window_ratios_equal_the_per_point_sums(points: list[tuple[float, State]],
                                                later: float) -> None:
    """What /metrics shows, from the kept sums, equals the ratios from sums at every point
    (the windows' arithmetic of ``window_availability`` over ``_running``)."""
    tl = Timeline()
    t = NOW - 40 * 86400.0
    for step, state in points:
        t += step
        tl.append_state(t, int(state))
    now = t + later
    got = window_availability(tl, now)
    many = window_availability_many([tl], now)[0][1]
    assert [v.hex() for v in many] == [got[w].hex() for w in _WINDOW_NAMES]
    sums = [(float.fromhex(u), float.fromhex(d)) for u, d, _, _ in _running(tl)]
    want: dict[str, str] = {}
    for name, size in zip(_WINDOW_NAMES, _window_sizes(), strict=True):
        bu, bd = _cum(tl, sums, now)
        au, ad = _cum(tl, sums, now - size)
        up = bu - au
        total = up + (bd - ad)
        want[name] = (1.0 if total <= 0 else up / total).hex()
    constant = not tl.ts or tl.ts[-1] <= now - max(_window_sizes()) or (
        len(tl) == 1 and tl.st[0] == int(UP))
    if not constant:  # constant histories take a shortcut that tests elsewhere cover
        assert {w: v.hex() for w, v in got.items()} == want


def _window_sizes() -> list[float]:
    from streams.report import _WINDOW_SIZES
    return list(_WINDOW_SIZES)


def _cum(tl: Timeline, sums: list[tuple[float, float]], x: float) -> tuple[float, float]:
    from bisect import bisect_right
    ts = tl.ts
    if not ts or x < ts[0]:
        return (x - (ts[0] if ts else 0.0), 0.0)
    i = bisect_right(ts, x) - 1
    dt = x - ts[i]
    s = tl.st[i]
    return (sums[i][0] + (dt if s == int(UP) else 0.0), sums[i][1] + (dt if s == int(DOWN) else 0.0))


def test_memory_is_a_block_not_a_point() -> None:
    """What a reader builds is 4 doubles a block: a 10,000-point history keeps 313."""
    tl = Timeline()
    for k in range(10_000):
        tl.append_state(float(k), int(STATES[k % 3]))
    tl.totals(0.0, 20_000.0)
    assert len(tl._sums) == _SUMS * math.ceil(10_000 / BLOCK)


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(_edit, max_size=30))
def test_every_prune_leaves_only_the_tags_in_use(
        edits: list[tuple[str, float, int, State, tuple[str, ...], int]]) -> None:
    """A prune compacts the tag table even when it drops no point (a re-evaluation may
    have replaced the last users of a tag), and the function is unchanged by it."""
    tl = Timeline()
    t = 1_000.0
    for op, step, count, state, tag, where in edits:
        tag = tag if state == DOWN else ()
        if op == "append":
            # append_state is for times at or after the last point; an assign may
            # have ended past ``t``.
            t = max(t, tl.ts[-1]) if tl.ts else t
            for k in range(count % 5 + 1):
                t += step * (k % 2)
                tl.append_state(t, int(state), tag)
        elif op == "assign" and tl.ts:
            at = tl.ts[where % len(tl)]
            tl.assign(at, at + step if step else math.inf, [(at, int(state), tag)])
        elif tl.ts:
            assert list(tl.ts) == sorted(tl.ts)
            cut = tl.ts[0] - 1.0 if op == "ask" else tl.ts[where % len(tl)]
            end = max(t, tl.ts[-1]) + 1.0
            before = list(tl.segments(cut, end))
            tl.prune_before(cut)
            assert set(tl.tag) | {0} == set(range(len(tl.tags)))
            assert len(set(tl.tags)) == len(tl.tags)
            assert list(tl.segments(cut, end)) == before


def _edited(tl: Timeline, edits: list[tuple[str, float, int, State, tuple[str, ...], int]]
            ) -> Iterator[str]:
    """Applies ``edits`` to ``tl`` one at a time (runs of in-order points whose down ones
    carry the tag, late corrections, prunes; "ask" changes nothing), yielding each op
    after it is applied."""
    t = 1_000.0
    for op, step, count, state, tag, where in edits:
        if op == "append":
            t = max(t, tl.ts[-1]) if tl.ts else t  # an assign may have ended past t
            for k in range(count):
                t += step * (k % 3 != 0)
                s = STATES[(int(state) + k) % 3]
                tl.append_state(t, int(s), tag if s == DOWN else ())
        elif op == "assign" and tl.ts:
            at = tl.ts[where % len(tl)]
            tl.assign(at, at + step if step else math.inf,
                      [(at, int(state), tag if state == DOWN else ())])
        elif op == "prune" and tl.ts:
            tl.prune_before(tl.ts[where % len(tl)])
        yield op


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(_edit, max_size=40),
       windows=st.lists(st.tuples(st.floats(0.0, 3e6), st.floats(0.0, 3e6)), max_size=3))
def test_attribution_sums_equal_the_running_sums(
        edits: list[tuple[str, float, int, State, tuple[str, ...], int]],
        windows: list[tuple[float, float]]) -> None:
    """The attribution index keeps a component's running sum at every ATT_BLOCK-th of its
    pieces; the sum after any number of pieces is the running sum's float, bit for bit,
    through appends, re-evaluations and prunes between reads."""
    tl = Timeline()
    for op in _edited(tl, edits):
        for start, width in windows:  # reads build the index part way
            tl.attribute(start, start + width, {})
        if op == "ask" or not tl.ts:
            continue  # the index is read only after it is brought up to date: below
        tl._build_attribution()
        for idx, cum in tl._att.values():
            running = [0.0]
            for i in idx:
                running.append(running[-1] + (tl.ts[i + 1] - tl.ts[i]) / len(tl.tag_at(i)))
            assert [tl._att_cum(idx, cum, e).hex() for e in range(len(idx) + 1)] == \
                [x.hex() for x in running]
            assert len(cum) == len(idx) // ATT_BLOCK + 1 + (len(idx) % ATT_BLOCK != 0)


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(_edit, max_size=40), cuts=st.lists(st.tuples(st.integers(0, 400),
                                                                   st.integers(0, 400)),
                                                         min_size=1, max_size=4),
       before=st.dictionaries(st.sampled_from(("a", "b", "c", "x")),
                              st.floats(0.0, 1e6, allow_nan=False), max_size=3))
def test_attribution_twins_agree(edits: list[tuple[str, float, int, State, tuple[str, ...], int]],
                                 cuts: list[tuple[int, int]], before: dict[str, float]) -> None:
    """``_native.att_whole`` adds to a dict what ``Timeline._att_whole`` adds, bit for
    bit, from any piece range of an index built through appends, re-evaluations and
    prunes, onto whatever the dict held (the piece cut by the window's start)."""
    fast = native.native
    if fast is None:
        pytest.skip("the Python path has no twin to compare with")
    tl = Timeline()
    for _ in _edited(tl, edits):
        if not tl.ts:
            continue
        tl._build_attribution()
        n = len(tl)
        for a, b in cuts:
            lo, hi = sorted((a % n, b % n))
            want, got = dict(before), dict(before)
            tl._att_whole(lo, hi, want)
            fast.att_whole(tl._att, lo, hi, tl.ts, tl.tag, tl.tags, got)
            assert list(got) == list(want)
            assert {k: v.hex() for k, v in got.items()} == {k: v.hex() for k, v in want.items()}


def _index(tl: Timeline) -> list[tuple[str, list[int], list[str]]]:
    """The attribution index, in its dict's order, with the sums' bits."""
    return [(comp, list(idx), [x.hex() for x in cum]) for comp, (idx, cum) in tl._att.items()]


@settings(max_examples=150, deadline=None)
@given(edits=st.lists(_edit, max_size=40),
       windows=st.lists(st.tuples(st.floats(0.0, 3e6), st.floats(0.0, 3e6)), max_size=3))
def test_attribution_index_twins_agree(
        edits: list[tuple[str, float, int, State, tuple[str, ...], int]],
        windows: list[tuple[float, float]]) -> None:
    """``_native.att_extend`` builds the attribution index ``Timeline._att_extend``
    builds (the same components in the same order, pieces and sums bit for bit), through
    appends, re-evaluations and prunes, with reads between that build it part way and
    edits that make it forget pieces."""
    fast = native.native
    if fast is None:
        pytest.skip("the Python path has no twin to compare with")
    in_c, in_py = Timeline(), Timeline()
    for _ in zip(_edited(in_c, edits), _edited(in_py, edits), strict=True):
        for start, width in windows:
            got, want = {}, {}
            in_c.attribute(start, start + width, got)
            native.native = None
            try:
                in_py.attribute(start, start + width, want)
            finally:
                native.native = fast
            assert {k: v.hex() for k, v in got.items()} == {k: v.hex() for k, v in want.items()}
        in_c._build_attribution()
        native.native = None
        try:
            in_py._build_attribution()
        finally:
            native.native = fast
        assert _index(in_c) == _index(in_py)
        assert (in_c._att_n, in_c._valid3) == (in_py._att_n, in_py._valid3)


@settings(max_examples=100, deadline=None)
@given(points=st.lists(st.tuples(st.floats(0.0, 5000.0, allow_nan=False),
                                 st.sampled_from(STATES)), max_size=5 * BLOCK),
       reads=st.lists(st.tuples(st.floats(-1e4, 4e5), st.floats(0.0, 4e5)), min_size=1,
                      max_size=4))
def test_service_numbers_equal_the_per_point_sums(points: list[tuple[float, State]],
                                                  reads: list[tuple[float, float]]) -> None:
    """``totals``, ``up_down``, ``window_totals`` and ``outage_counters`` (the SLA, error
    budget and outage series) from the kept sums are the per-point sums' floats."""
    tl = Timeline()
    t = 0.0
    for step, state in points:
        t += step
        tl.append_state(t, int(state))
    run = [tuple(float.fromhex(x) if isinstance(x, str) else x for x in p) for p in _running(tl)]

    def cum(x: float) -> tuple[float, float, float]:
        from bisect import bisect_right
        ts = tl.ts
        if not ts or x < ts[0]:
            return (x - (ts[0] if ts else 0.0), 0.0, 0.0)
        i = bisect_right(ts, x) - 1
        dt, s = x - ts[i], tl.st[i]
        return (run[i][0] + (dt if s == int(UP) else 0.0), run[i][1] + (dt if s == int(DOWN) else 0.0),
                run[i][2] + (dt if s == int(MAINTENANCE) else 0.0))

    def hexes(v: tuple[float, ...]) -> list[str]:
        return [x.hex() for x in v]

    for start, width in reads:
        end = start + width
        if width > 0:
            a, b = cum(start), cum(end)
            want = (b[0] - a[0], b[1] - a[1], b[2] - a[2])
            assert hexes(tl.totals(start, end)) == hexes(want)
            assert hexes(tl.up_down(start, end)) == hexes(want[:2])
        sizes = (width, 2 * width + 1.0)
        got = tl.window_totals(end, sizes)
        for size, g in zip(sizes, got, strict=True):
            a, b = cum(end - size), cum(end)
            assert hexes(g) == hexes((b[0] - a[0], b[1] - a[1], b[2] - a[2])) or not tl.ts
        count, ended, current = tl.outage_counters(end)
        i = sum(1 for x in tl.ts if x <= end) - 1
        if i >= 0:
            assert count == run[i][3]
            j = i
            while j > 0 and tl.st[j - 1] == int(DOWN):
                j -= 1
            cur = end - tl.ts[j] if tl.st[i] == int(DOWN) else 0.0
            assert (ended.hex(), current.hex()) == (
                ((cum(end)[1] - cum(tl.ts[0])[1]) - cur).hex(), cur.hex())

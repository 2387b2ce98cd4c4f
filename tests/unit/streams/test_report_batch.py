"""``window_availability_many`` and ``window_availability_flat`` give what
``window_availability`` gives, bit for bit.

The collector computes the ratios of every component whose windows move with one call
per chunk of components; the /metrics text must stay the text of the one-timeline
function, so every float must be the same (``float.hex`` tells -0.0 from 0.0 and shows
every bit). Run on the C loops (``_native.windows_many``) and on the Python ones.
"""

from __future__ import annotations

from bisect import bisect_right

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.accounting import OUTSIDE
from streams.report import (
    _WINDOW_NAMES,
    window_availability,
    window_availability_flat,
    window_availability_many,
)
from streams.states import DOWN, MAINTENANCE, UP, State
from streams.timeline import BLOCK, Timeline

pytestmark = pytest.mark.usefixtures("engine_path")

NOW = 1_709_251_200.0
STATES = (UP, MAINTENANCE, DOWN)
OFFSETS = (0.0, 1.0, 59.0, 299.0, 300.0, 301.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
           259200.0, 604800.0, 2592000.0, 2592001.0, 40 * 86400.0, -1.0, -300.0)
LATER = (0.0, 0.25, 1.0, 299.0, 300.0, 301.0, 3600.0, 86400.0, 2592000.0)


def _expected(tl: Timeline, now: float) -> tuple[int, tuple[str, ...]]:
    avail = window_availability(tl, now)
    # The state's number (OUTSIDE, of accounted timelines, is no ``State``).
    j = bisect_right(tl.ts, now) - 1
    return (int(UP) if j < 0 else tl.st[j]), tuple(avail[w].hex() for w in _WINDOW_NAMES)


def _got(item: tuple[int, tuple[float, ...]]) -> tuple[int, tuple[str, ...]]:
    state, values = item
    return state, tuple(v.hex() for v in values)


def _flat(tls: list[Timeline], now: float) -> list[tuple[int, tuple[str, ...]]]:
    """``window_availability_flat`` as ``_got`` items."""
    states, values = window_availability_flat(tls, now)
    nw = len(_WINDOW_NAMES)
    assert len(states) == len(tls) and len(values) == nw * len(tls)
    assert all(type(v) is float for v in values)
    return [(s, tuple(v.hex() for v in values[k * nw:(k + 1) * nw]))
            for k, s in enumerate(states)]


_points = st.lists(
    st.tuples(st.sampled_from(OFFSETS) | st.floats(-600.0, 50 * 86400.0, allow_nan=False),
              st.sampled_from(STATES)),
    max_size=12,
)


def _timeline(points: list[tuple[float, State]]) -> Timeline:
    tl = Timeline()
    for back, state in sorted(points, key=lambda p: -p[0]):
        tl.append_state(NOW - back, int(state))
    return tl


@settings(max_examples=300, deadline=None)
@given(timelines=st.lists(_points, max_size=6), later=st.lists(st.sampled_from(LATER),
                                                              min_size=1, max_size=4))
def test_many_is_bit_identical(timelines: list[list[tuple[float, State]]],
                               later: list[float]) -> None:
    tls = [_timeline(p) for p in timelines]
    for dt in later:  # the same timelines at several instants, as scrapes see them
        now = NOW + dt
        got = window_availability_many(tls, now)
        assert [_got(g) for g in got] == [_expected(tl, now) for tl in tls]
        assert _flat(tls, now) == [_expected(tl, now) for tl in tls]


@settings(max_examples=100, deadline=None)
@given(points=_points, more=_points)
def test_timeline_changed_after_a_batch(points: list[tuple[float, State]],
                                        more: list[tuple[float, State]]) -> None:
    """Prefix sums built by an earlier call are brought up to date after an append."""
    tl = _timeline(points)
    window_availability_many([tl], NOW)
    last = tl.ts[-1] if tl.ts else NOW - 50 * 86400.0
    for back, state in sorted(more, key=lambda p: -p[0]):
        t = NOW - back
        if t >= last:
            tl.append_state(t, int(state))
            last = t
    fresh = _timeline([])
    fresh = Timeline(list(tl.ts), list(tl.st), tl.tag_list())
    for dt in (0.0, 1.0, 301.0):
        assert _got(window_availability_many([tl], NOW + dt)[0]) == _expected(fresh, NOW + dt)


def test_empty_and_constant_timelines() -> None:
    empty = Timeline()
    up = _timeline([(10.0, UP)])
    down_long_ago = _timeline([(40 * 86400.0, DOWN)])
    future = _timeline([(-100.0, DOWN)])
    tls = [empty, up, down_long_ago, future]
    got = window_availability_many(tls, NOW)
    assert [_got(g) for g in got] == [_expected(tl, NOW) for tl in tls]
    assert got[2] == (int(DOWN), (0.0,) * len(_WINDOW_NAMES))
    assert window_availability_many([], NOW) == []
    assert window_availability_flat([], NOW) == (b"", [])
    assert _flat(tls, NOW) == [_expected(tl, NOW) for tl in tls]


_long = st.lists(
    st.tuples(st.sampled_from((0.0, 0.5, 1.0, 60.0, 3600.0)) | st.floats(0.0, 86400.0, allow_nan=False),
              st.sampled_from((*STATES, OUTSIDE))),
    max_size=5 * BLOCK,
)


def _steps(tl: Timeline, t: float, points: list[tuple[float, int]]) -> float:
    """Appends ``points`` to ``tl`` as (step after the previous time, state) from ``t``
    on; returns the last time."""
    for step, state in points:
        t += step
        tl.append_state(t, int(state))
    return t


@settings(max_examples=150, deadline=None)
@given(points=_long, more=_long, at=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=3),
       later=st.sampled_from(LATER))
def test_flat_over_long_histories(points: list[tuple[float, int]], more: list[tuple[float, int]],
                                  at: list[float], later: float) -> None:
    """Histories of several blocks (kept sums), read at instants inside them and after,
    then appended to (the kept sums out of date) and read again: the flat columns are the
    one-timeline function's floats, and a timeline whose sums were built in between
    gives what a fresh copy gives."""
    tl = Timeline()
    t = _steps(tl, NOW - 20 * 86400.0, points)
    span = (tl.ts[0], tl.ts[-1]) if tl.ts else (NOW, NOW)
    instants = [span[0] + (span[1] - span[0]) * (0.5 + a / 2) for a in at] + [span[1] + later]
    for now in instants:
        assert _flat([tl], now) == [_expected(Timeline(list(tl.ts), list(tl.st)), now)]
    t = _steps(tl, t, more)
    copy = Timeline(list(tl.ts), list(tl.st))
    for now in [*instants, t + later]:
        assert _flat([tl, copy], now) == [_expected(copy, now)] * 2


@settings(max_examples=200, deadline=None)
@given(points=_long, at=st.lists(st.floats(-0.2, 1.2), min_size=1, max_size=4),
       later=st.sampled_from(LATER))
def test_lines_until_twins_agree(points: list[tuple[float, int]], at: list[float],
                                 later: float) -> None:
    """``_native.lines_until`` gives ``_lines_until``'s bound (the collector's proof that
    a component's lines stay), at instants before, inside and after a history."""
    from streams import native
    from streams.report import _WINDOW_SIZES, _lines_until

    fast = native.native
    if fast is None:
        pytest.skip("the Python path has no twin to compare with")
    tl = Timeline()
    _steps(tl, NOW - 20 * 86400.0, points)
    span = (tl.ts[0], tl.ts[-1]) if tl.ts else (NOW, NOW)
    for now in [span[0] + (span[1] - span[0]) * a for a in at] + [span[1] + later]:
        want = _lines_until(tl.ts, tl.st, now)
        assert fast.lines_until(tl.ts, tl.st, now, _WINDOW_SIZES).hex() == float(want).hex()


@settings(max_examples=100, deadline=None)
@given(histories=st.lists(_long, max_size=4), at=st.floats(-0.2, 1.2),
       later=st.sampled_from(LATER), down_for=st.floats(0.0, 40 * 86400.0),
       before=st.sampled_from(STATES))
def test_lines_codes_many_are_each_ones_bound_and_values(
        histories: list[list[tuple[float, int]]], at: float, later: float, down_for: float,
        before: State) -> None:
    """``component_lines_codes_many`` of trackers (and None: no event yet) gives each
    one's ``component_lines_until``, in order, on either path; where that is after
    ``now`` its codes are the state and exactly the floats ``window_availability``
    gives (the collector writes a constant component's lines from them)."""
    from streams import native
    from streams.component import ComponentTracker
    from streams.report import (
        _WINDOW_SIZES,
        CODE_VALUES,
        _lines_until_code,
        component_lines_codes_many,
        component_lines_until,
    )

    trackers: list[ComponentTracker | None] = [None]
    for points in histories:
        tracker = ComponentTracker("c")
        _steps(tracker.history, NOW - 20 * 86400.0, points)
        trackers += [tracker, None]
    ends = [t for tr in trackers if tr is not None for t in tr.history.ts] or [NOW]
    # down for longer or shorter than the longest window (proved constant at 0.0)
    down = ComponentTracker("d")
    _steps(down.history, NOW - 80 * 86400.0, [(0.0, before), (3600.0, DOWN)])
    trackers.append(down)
    for now in (min(ends) + (max(ends) - min(ends)) * at, max(ends) + later,
                down.history.ts[-1] + down_for):
        want = [component_lines_until(t, now) for t in trackers]
        got, codes = component_lines_codes_many(trackers, now)
        assert [float(x).hex() for x in got] == [float(x).hex() for x in want]
        assert len(codes) == 2 * len(trackers)
        for k, (t, until) in enumerate(zip(trackers, got, strict=True)):
            if until <= now:
                continue
            tl = Timeline() if t is None else t.history
            state, values = _expected(tl, now)
            assert codes[2 * k + 1] == state
            assert tuple(v.hex() for v in CODE_VALUES[codes[2 * k]]) == values
            if native.native is not None and t is not None:  # the twins agree
                assert _lines_until_code(tl.ts, tl.st, now)[1:] == (codes[2 * k], state)
        if native.native is not None:
            assert native.native.lines_codes_many(trackers, now, _WINDOW_SIZES)[1] == codes

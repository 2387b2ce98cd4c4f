"""A component history's compaction, in C and in Python: the same points kept.

``ComponentTracker.compact`` drops the points before the lateness horizon that do not
change the step function (a repeat of the state, or a point followed by another at its
ts). In a storm every point is a change and nothing is dropped; with heartbeats most
points are repeats. Both twins must keep exactly the points the rule keeps.
"""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import native
from streams.component import ComponentTracker, _compact_keep
from streams.events import ComponentEvent
from streams.states import State


def _spec(ts: list[float], st_: list[int], start: int, cut: int) -> tuple[list[float], list[int]]:
    """The rule, as plainly as it can be said: the last point at each ts, when its state
    differs from the last point kept before it (UP before the first point)."""
    kept_t: list[float] = []
    kept_s: list[int] = []
    prev = st_[start - 1] if start else 0
    for i in range(start, cut):
        last_at_ts = i + 1 == len(ts) or ts[i + 1] != ts[i]
        if last_at_ts and st_[i] != prev:
            kept_t.append(ts[i])
            kept_s.append(st_[i])
            prev = st_[i]
    return kept_t, kept_s


@st.composite
def _histories(draw: st.DrawFn) -> tuple[list[float], list[int], int, int]:
    gaps = draw(st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.5, 60.0]), max_size=40))
    ts: list[float] = []
    t = 1_700_000_000.0
    for g in gaps:
        t += g
        ts.append(t)
    states = draw(st.lists(st.integers(0, 2), min_size=len(ts), max_size=len(ts)))
    if draw(st.booleans()):  # a storm: every point a change
        states = [(i % 2) * 2 for i in range(len(ts))]
    start = draw(st.integers(0, len(ts)))
    cut = draw(st.integers(start, len(ts)))
    return ts, states, start, cut


@given(_histories())
def test_c_and_python_keep_what_the_rule_keeps(h: tuple[list[float], list[int], int, int]) -> None:
    ts, states, start, cut = h
    want = _spec(ts, states, start, cut)
    everything = want == (ts[start:cut], states[start:cut])
    twins = [_compact_keep]
    if native.native is not None:
        twins.append(native.native.compact_keep)
    for keep in twins:
        got = keep(array("d", ts), array("b", states), start, cut)
        if everything:
            assert got is None, keep
        else:
            assert got is not None and (list(got[0]), list(got[1])) == want, keep
            assert all(type(s) is int for s in got[1])


def test_the_c_twin_refuses_a_range_outside_the_columns() -> None:
    if native.native is None:
        pytest.skip("the C extension is not built")
    with pytest.raises(ValueError):
        native.native.compact_keep(array("d", [1.0]), array("b", [0]), 0, 2)
    with pytest.raises(ValueError):
        native.native.compact_keep(array("d", [1.0, 2.0]), array("b", [0]), 0, 1)


@pytest.mark.usefixtures("engine_path")
@pytest.mark.parametrize("storm", [True, False])
def test_a_tracker_compacts_as_the_rule_says(storm: bool) -> None:
    """200 events of one component 1 s apart, lateness 10 s, compacted on the way (every
    64 points) and once more at the end: before the horizon exactly the points the rule
    keeps of all 200 events, after it every event. A storm keeps every point."""
    tr = ComponentTracker("db-1")
    raw_t, raw_s = [], []
    for i in range(200):
        down = (i + 1) % 2 if storm else (i // 10 + 1) % 2
        raw_t.append(1000.0 + i)
        raw_s.append(2 if down else 0)
        tr.apply(ComponentEvent("db-1", State.DOWN if down else State.UP, 1000.0 + i), 10.0)
    horizon = tr.newest - 10.0
    tr.compact(horizon)
    cut = sum(1 for t in raw_t if t < horizon)
    kept_t, kept_s = _spec(raw_t, raw_s, 0, cut)
    assert list(tr.history.ts) == kept_t + raw_t[cut:]
    assert list(tr.history.st) == kept_s + raw_s[cut:]
    assert len(tr.history.tag) == len(tr.history.ts)
    if storm:
        assert len(tr.history.ts) == 200
    else:
        assert kept_t == [1000.0 + 10 * k for k in range(19)]

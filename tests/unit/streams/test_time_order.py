"""A service's segments of a batch in time order, in C and in Python: the same segments,
sorted by start, each component's own order kept (a stable sort)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import native
from streams.service import in_time_order_columns

_cols = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                           st.sampled_from([1.0, 2.0, 2.5, 3.0, 1e9, -4.0]), st.integers(0, 2)),
                 max_size=30)


@given(cols=_cols, as_bytes=st.booleans())
def test_c_and_python_order_the_same(cols: list[tuple[str, float, int]], as_bytes: bool) -> None:
    comps = [c for c, _, _ in cols]
    starts = [t for _, t, _ in cols]
    states: bytes | list[int] = bytes(s for _, _, s in cols) if as_bytes else [s for _, _, s in cols]
    fast = native.native
    if fast is None:
        return  # the C loops are not built: nothing to compare
    c = list(in_time_order_columns(comps, starts, None, states))
    native.native = None
    try:
        py = list(in_time_order_columns(comps, starts, None, states))
    finally:
        native.native = fast
    want = sorted(zip(comps, starts, [math.inf] * len(cols), [int(s) for s in states],
                      strict=True), key=lambda seg: seg[1])  # stable
    assert c == py == want
    assert all(type(seg[3]) is int for seg in c)


_runs = st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]),
                                    st.sampled_from([0.5, 1.0, 2.0, 2.5, 3.0, 7.25, 1e9]),
                                    st.integers(0, 2)), max_size=20)
                 .map(lambda run: sorted(run, key=lambda seg: seg[1])), max_size=9)


@given(runs=_runs)
def test_ascending_runs_are_merged_as_a_stable_sort(runs: list[list[tuple[str, float, int]]]) -> None:
    """What stage 2 gets: a service's segments of a fetch are a few runs in time order,
    one per stage-1 partition and message (the C loop merges them run by run)."""
    cols = [seg for run in runs for seg in run]
    comps = [c for c, _, _ in cols]
    starts = [t for _, t, _ in cols]
    states = bytes(s for _, _, s in cols)
    want = sorted(zip(comps, starts, [math.inf] * len(cols), list(states), strict=True),
                  key=lambda seg: seg[1])
    assert list(in_time_order_columns(comps, starts, None, states)) == want


def test_a_bad_state_is_refused_before_any_segment_is_given() -> None:
    fast = native.native
    if fast is None:
        return  # the C loops are not built
    with pytest.raises(ValueError, match="state 7"):
        fast.time_ordered(["a", "b"], [2.0, 1.0], bytes([0, 7]))

"""A service's segments of a batch in time order, in C and in Python: the same segments,
sorted by start, each component's own order kept (a stable sort)."""

from __future__ import annotations

import math

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

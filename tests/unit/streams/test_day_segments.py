"""The day rollups' loop in C (``_native.day_segments``) against the Python one.

``Account.add_segments`` adds a view's pieces over ``[a, b)`` to a day's account: the
services checkpoint runs it over every point a batch added to a running day. Both
loops must give the same doubles bit for bit, the same runs (times, blamed sets, their
table) and the same blame, in the same order, over generated views (every state,
blamed sets in any order, runs that go on across calls) and any cuts, as ``add_view``
makes at its marks. The rollups' properties against the brute-force reference
(tests/unit/streams/test_periods.py) run on the C loop.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import native
from streams.periods import Account
from streams.timeline import Timeline

TAGS = [(), ("a",), ("b", "a"), ("a", "b"), ("c",), ("a", "b", "c"), ("c", "b")]

_points = st.lists(st.tuples(st.sampled_from([0.0, 0.25, 1.0, 7.5, 60.0]),
                             st.integers(0, 3), st.sampled_from(TAGS)),
                   max_size=40)


@pytest.fixture(scope="module", params=["fast", "generic"])
def columns_access(request: pytest.FixtureRequest) -> Iterator[str]:
    """The C loop reading and appending to the columns in place, and through the
    generic calls (``_native.array_fast(False)``)."""
    mod = native.native
    if mod is None:
        pytest.skip("the C extension is not built or turned off")
    was = mod.array_fast()
    mod.array_fast(request.param == "fast")
    try:
        yield request.param
    finally:
        mod.array_fast(was)


def _timeline(points: list[tuple[float, int, tuple[str, ...]]], t0: float) -> Timeline:
    ts, sts, tags = [], [], []
    t = t0
    for gap, s, tag in points:
        t += gap if ts else 0.0
        if ts and t <= ts[-1]:
            t = ts[-1] + 0.5
        ts.append(t)
        sts.append(s)
        tags.append(tag)
    return Timeline(ts, sts, tags)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _state(acc: Account) -> Any:
    return (_bits(acc.up), _bits(acc.down), _bits(acc.planned), acc.runs.ab.tobytes(),
            acc.runs.ix.tolist(), list(acc.runs.tags),
            [(k, _bits(v)) for k, v in acc.blame.items()])


def _run(view: Timeline, cuts: list[float], c: bool) -> list[Any]:
    mod = native.native
    if not c:
        native.native = None
    try:
        acc = Account()
        out = []
        for a, b in itertools.pairwise(cuts):
            acc.add_segments(view, a, b)
            out.append(_state(acc))
        return out
    finally:
        native.native = mod


@settings(max_examples=300, deadline=None)
@given(points=_points, t0=st.sampled_from([-0.0, 0.0, 100.0]),
       cuts=st.lists(st.sampled_from([-5.0, -0.0, 0.0, 0.1, 1.0, 30.0, 99.0, 100.0, 100.25,
                                      160.0, 400.0, 1e9]), min_size=2, max_size=6))
def test_c_loop_is_the_python_loop(columns_access: str, points: Any, t0: float,
                                   cuts: list[float]) -> None:
    view = _timeline(points, t0)
    cuts = sorted(cuts)
    assert _run(view, cuts, c=True) == _run(view, cuts, c=False)

"""``ComponentTracker.small_records``: the records a components checkpoint writes whole,
made in one C call, byte for byte what ``small_record`` makes tracker by tracker, and
that what the packer writes (``to_record``). Generated: any component id (quotes,
backslashes, control characters, non-ASCII), any newest time (-inf, exponents, NaN,
infinities), histories with and without tags, limits around the history's size,
subclasses (the method's path)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import native
from streams.component import ComponentTracker
from streams.record import Packer
from streams.timeline import Timeline

fast = native.native
pytestmark = pytest.mark.skipif(fast is None, reason="the C extension is not built")


class Sub(ComponentTracker):
    __slots__ = ()


ids = st.one_of(st.text(min_size=1, max_size=12),
                st.text(alphabet="ab-_.:/\"\\\n\x7f é", min_size=1, max_size=8),
                st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True))
times = st.one_of(st.floats(), st.just(-math.inf),
                  st.floats(min_value=1e9, max_value=2e9),
                  st.sampled_from([1e16, 1e-5, 0.0001, -0.0, 5e-324, 1e15, 123.0]))


@st.composite
def trackers(draw: Any) -> ComponentTracker:
    cls = draw(st.sampled_from([ComponentTracker, ComponentTracker, ComponentTracker, Sub]))
    t = cls(draw(ids))
    n = draw(st.integers(0, 12))
    ts = sorted(draw(st.lists(st.floats(0, 2e9), min_size=n, max_size=n)))
    states = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    tags = draw(st.one_of(st.none(), st.lists(st.sampled_from([(), ("x",), ("x", "y")]),
                                              min_size=n, max_size=n)))
    t.history = Timeline(ts, states, tags)
    t.newest = draw(times)
    return t


def packed(t: ComponentTracker) -> bytes:
    p = Packer()
    return p.encode(t.to_record(p))


@settings(max_examples=400, deadline=None)
@given(st.lists(trackers(), max_size=8), st.integers(0, 140))
def test_small_records_are_small_record_of_each(ts: list[ComponentTracker], limit: int) -> None:
    got = ComponentTracker.small_records(ts, limit)
    want = [t.small_record(limit) for t in ts]
    assert got == want
    for t, rec in zip(ts, got, strict=True):
        if rec is not None:
            assert rec == packed(t)  # what the packer's path writes


def test_plain_trackers_take_the_c_path() -> None:
    """The C path runs (not the method) for plain trackers: a method that says None
    is not called for them, and is for a subclass."""
    calls: list[str] = []

    class Spy(ComponentTracker):
        __slots__ = ()

        def small_record(self, limit: int) -> bytes | None:
            calls.append(self.component)
            return None

    plain, spy = ComponentTracker("db-1"), Spy("db-2")
    for t in (plain, spy):
        t.history = Timeline([1.0, 2.5], [0, 2])
        t.newest = 2.5
    got = ComponentTracker.small_records([plain, spy], 1000)
    assert got[0] == packed(plain) and got[1] is None
    assert calls == ["db-2"]


def test_an_error_in_the_method_is_raised() -> None:
    class Bad(ComponentTracker):
        __slots__ = ()

        def small_record(self, limit: int) -> bytes | None:
            raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        ComponentTracker.small_records([ComponentTracker("a"), Bad("b")], 100)

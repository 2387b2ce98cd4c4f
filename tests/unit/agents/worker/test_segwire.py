"""The segments wire form: what stage 1 sends is what stage 2 applies, bit for bit."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.worker import segwire

_ids = st.from_regex(r"[A-Za-z0-9._:/@-]{1,20}", fullmatch=True)
_times = st.floats(allow_nan=False, allow_infinity=False)
_segments = st.lists(
    st.tuples(_ids, _times, st.one_of(_times, st.just(math.inf)), st.integers(0, 2)),
    min_size=1, max_size=30,
)


@given(segs=_segments)
def test_round_trip_is_exact(segs: list[tuple[str, float, float, int]]) -> None:
    got = segwire.decode(segwire.encode(segs))
    assert got == segs
    assert all(type(s) is float and type(e) is float and type(t) is int for _, s, e, t in got)


@given(parts=st.lists(_segments, min_size=1, max_size=4))
def test_columns_of_several_messages_are_their_segments_in_order(
        parts: list[list[tuple[str, float, float, int]]]) -> None:
    cols = segwire.concat([segwire.decode_columns(segwire.encode(p)) for p in parts])
    want = [seg for p in parts for seg in p]
    ends = [math.inf] * len(want) if cols.ends is None else cols.ends
    assert list(zip(cols.comps, cols.starts, ends, cols.states, strict=True)) == want
    # the end column is left out exactly when every segment is open-ended
    assert (cols.ends is None) == all(e == math.inf for _, _, e, _ in want)


def test_json_from_earlier_versions_is_still_read() -> None:
    raw = orjson.dumps([["db-1", 10.5, None, 2], ["db-1", 20, 30.25, 0]])
    assert segwire.decode(raw) == [("db-1", 10.5, math.inf, 2), ("db-1", 20.0, 30.25, 0)]
    assert segwire.decode_columns(raw) == (["db-1", "db-1"], [10.5, 20.0], [math.inf, 30.25],
                                           b"\x02\x00")


@pytest.mark.parametrize("raw", [
    b"", b"[]", b"{}", b"[[1, 2, 3, 4]]", b'[["a", 1.0, null, 7]]', b'[["a", true, null, 0]]',
    segwire.MAGIC, segwire.MAGIC + b"\x05\x00\x00\x00abc",
    segwire.encode([("a", 1.0, math.inf, 2)])[:-1] + b"a\nb",  # one segment, two ids
    segwire.encode([("a", 1.0, math.inf, 2)]).replace(b"\x02a", b"\x09a"),  # state 9
])
def test_anything_else_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        segwire.decode(raw)


"""The collector's C loops and their Python twins.

``ComponentLines`` writes each moving component's window lines as pieces ``label +
value + next line's head`` at a stride in its chunk's list (``_native.put_texts``, in
Python ``_put_texts``), its up line by its state (``put_choices``), and asks whether
any value's text needs ``_f`` rather than orjson's (``plain_floats``). Each pair must
give the same result, whatever the strings (ASCII, as the exposition's, or not), the
indexes and the floats (NaN, infinities, -0.0, subnormals), and refuse the same
malformed calls.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.exposition.collector import (
    _FAST_HI,
    _FAST_LO,
    FLOATS,
    OTHER,
    PLAIN,
    _float_texts,
    _odd_floats,
    _orjson_texts,
    _plain_floats,
    _put_choices,
    _put_texts,
    put_choices,
    put_texts,
    put_value_texts,
)
from agents.exposition.collector import _f as f_text
from streams import native

pytestmark = pytest.mark.usefixtures("engine_path")

_text = st.text(max_size=6) | st.sampled_from(("", "0.5", "1.0", "+Inf", "NaN", "é", "\n"))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), nw=st.integers(1, 4), size=st.integers(0, 30))
def test_twins_leave_the_same_list(data: st.DataObject, nw: int, size: int) -> None:
    pre = tuple(data.draw(st.lists(_text, min_size=nw, max_size=nw)))
    post = tuple(data.draw(st.lists(_text, min_size=nw, max_size=nw)))
    top = size - 2 * (nw - 1)
    at = data.draw(st.lists(st.integers(0, top - 1), max_size=5)) if top > 0 else []
    texts = data.draw(st.lists(_text, min_size=nw * len(at), max_size=nw * len(at)))
    out = [f"<{i}>" for i in range(size)]
    want = list(out)
    _put_texts(want, at, texts, pre, post)
    put_texts(out, at, texts, pre, post)
    assert out == want
    if at:  # the last write of a slot wins in both
        k = len(at) - 1
        assert out[at[k]] == pre[0] + texts[nw * k] + post[0]


_ascii = st.text(st.characters(max_codepoint=127), max_size=6)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), nw=st.integers(1, 4), size=st.integers(0, 30), ascii_only=st.booleans())
def test_value_texts_are_the_f_texts_put(data: st.DataObject, nw: int, size: int,
                                         ascii_only: bool) -> None:
    """``put_value_texts`` (orjson's text of the floats handed over as bytes, the odd
    ones written again) leaves the list ``_put_texts`` of their ``_f`` texts leaves,
    whatever the floats and the strings around them."""
    strings = _ascii if ascii_only else _text
    pre = tuple(data.draw(st.lists(strings, min_size=nw, max_size=nw)))
    post = tuple(data.draw(st.lists(strings, min_size=nw, max_size=nw)))
    # Pieces of different keys do not overlap (as a chunk's components' do not).
    blocks = size // (2 * nw)
    at = [b * 2 * nw + 1 for b in data.draw(st.lists(st.integers(0, blocks - 1), max_size=5,
                                                      unique=True))] if blocks else []
    values = data.draw(st.lists(_floats, min_size=nw * len(at), max_size=nw * len(at)))
    out = [f"<{i}>" for i in range(size)]
    want = list(out)
    _put_texts(want, at, [f_text(v) for v in values], pre, post)
    put_value_texts(out, at, values, pre, post)
    assert out == want


def test_malformed_calls_are_refused() -> None:
    out = ["x"] * 4
    with pytest.raises(ValueError):
        put_texts(out, [0], ["a"], ("p", "q"), ("r", "s"))  # 1 text for 2 windows
    with pytest.raises(ValueError):
        put_choices(out, [0, 1], b"\x00", ("p",))  # a pick short
    if native.native is not None:
        with pytest.raises(IndexError):
            native.native.put_choices(out, [4], b"\x00", ("p",))
        with pytest.raises(IndexError):
            native.native.put_choices(out, [0], b"\x01", ("p",))
        with pytest.raises(IndexError):
            native.native.put_texts(out, [3], ["a", "b"], ("p", "q"), ("r", "s"))
        with pytest.raises(TypeError):
            native.native.put_texts(out, [0], [1.0, "b"], ("p", "q"), ("r", "s"))
    for json in (b"[1.0]", b"[1.0,2.0,3.0]", b"[1.0,]", b"[,1.0]", b"1.0,2.0", b'["a",2]'):
        with pytest.raises(ValueError):
            put_texts(out, [0], json, ("p", "q"), ("r", "s"))
    assert out == ["x"] * 4


@settings(max_examples=200, deadline=None)
@given(data=st.data(), size=st.integers(1, 20), nc=st.integers(1, 4))
def test_choices_twins_leave_the_same_list(data: st.DataObject, size: int, nc: int) -> None:
    choices = tuple(f"choice {c}" for c in range(nc))
    at = data.draw(st.lists(st.integers(0, size - 1), max_size=8))
    picks = bytes(data.draw(st.lists(st.integers(0, nc - 1), min_size=len(at), max_size=len(at))))
    out = [f"<{i}>" for i in range(size)]
    want = list(out)
    _put_choices(want, at, picks, choices)
    put_choices(out, at, picks, choices)
    assert out == want


_floats = st.floats() | st.sampled_from((0.0, -0.0, _FAST_LO, -_FAST_LO, _FAST_HI, 5e-324,
                                         0.9999999999999999, 1e-4 * (1 - 2 ** -52)))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_floats, max_size=12))
def test_plain_floats_twins_agree_and_texts_are_f_texts(values: list[float]) -> None:
    kind = _plain_floats(values, _FAST_LO, _FAST_HI)
    if native.native is not None:
        assert native.native.plain_floats(values, _FAST_LO, _FAST_HI) == kind
        mixed: list[float] = [*values, 1]  # type: ignore[list-item]  # an int
        assert native.native.plain_floats(mixed, _FAST_LO, _FAST_HI) == _plain_floats(
            mixed, _FAST_LO, _FAST_HI) == OTHER
    assert kind in (PLAIN, FLOATS)
    odd = _odd_floats(values, _FAST_LO, _FAST_HI)
    assert (kind == PLAIN) == (not odd)
    if native.native is not None:
        assert native.native.odd_floats(values, _FAST_LO, _FAST_HI) == odd
        with pytest.raises(TypeError):
            native.native.odd_floats(mixed, _FAST_LO, _FAST_HI)
    assert _float_texts(values) == [f_text(v) for v in values]
    if kind == PLAIN:  # orjson's texts as they are
        assert _orjson_texts(values) == [f_text(v) for v in values] or not values

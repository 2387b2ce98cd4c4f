"""The collector's C loops and their Python twins.

``ComponentLines`` writes each moving component's window lines as pieces ``label +
value + next line's head`` at a stride in its chunk's list (``_native.put_texts``, in
Python ``_put_texts``), its up line by its state (``put_choices``), and asks whether
any value's text needs ``_f`` rather than orjson's (``plain_floats``). Each pair must
give the same result, whatever the strings (ASCII, as the exposition's, or not), the
indexes and the floats (NaN, infinities, -0.0, subnormals), and refuse the same
malformed calls. ``ServiceLines`` writes the service families from each service's row
(``service_families``, in C; ``_service_families_text`` in Python): both must write
what ``_row_lines`` writes of each service, family by family.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.exposition.collector import (
    _FAST_HI,
    _FAST_LO,
    _S_NAMES,
    _WIN_LABELS,
    FLOATS,
    OTHER,
    PLAIN,
    Row,
    _float_texts,
    _odd_floats,
    _orjson_texts,
    _plain_floats,
    _put_choices,
    _put_texts,
    _row_lines,
    _service_families_text,
    put_choices,
    put_texts,
    put_value_texts,
    service_families,
    service_row,
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


_name = st.text(st.characters(max_codepoint=127), min_size=1, max_size=6) | st.sampled_from(
    ("é", "a\\b", 'q"t'))


@st.composite
def _service_rows(draw: st.DrawFn) -> tuple[list[str], list[str], list[Row], list[tuple[str, ...]]]:
    """Services as ``ServiceLines`` keeps them: labels, customers' texts, rows of
    generated values (NaN, infinities, -0.0, ints among them) and the values' ``_f``
    texts of each row."""
    labs, custs, rows, texts = [], [], [], []
    for _ in range(draw(st.integers(0, 4))):
        restore = draw(st.booleans())
        comps = tuple(draw(st.lists(_name, max_size=4)))
        n = 25 + restore + len(comps)
        values = draw(st.lists(_floats | st.integers(-3, 3), min_size=n, max_size=n))
        flags = bytes(draw(st.lists(st.integers(0, 1), min_size=6, max_size=6)))
        labs.append(f'kind="x",service="{draw(_name)}"')
        custs.append(draw(_name))
        rows.append(service_row(flags, values, comps, restore))
        texts.append(tuple(f_text(float(v)) for v in values))
    return labs, custs, rows, texts


@settings(max_examples=200, deadline=None)
@given(services=_service_rows())
def test_service_families_twins_write_the_rows_lines(
        services: tuple[list[str], list[str], list[Row], list[tuple[str, ...]]]) -> None:
    """``service_families`` (C when every string is ASCII) and its Python twin write,
    family by family, the lines ``_row_lines`` writes of each service from the ``_f``
    texts of its values: whatever the values, names and flags."""
    labs, custs, rows, texts = services
    want = ["".join(column) for column in zip(
        *[_row_lines(lab, cust, row[0], list(t), row[2], row[3])
          for lab, cust, row, t in zip(labs, custs, rows, texts, strict=True)],
        strict=True)] if rows else [""] * 20
    assert _service_families_text(_S_NAMES, _WIN_LABELS, labs, custs, rows) == want
    assert service_families(labs, custs, rows) == want


def test_service_families_refuse_malformed_rows() -> None:
    good = service_row(bytes(6), [0.5] * 26, ("c",), False)
    cases = [
        (b"\x00" * 6, good[1], ("c", "d"), False, None),  # a value short for its blame
        (b"\x00" * 6, good[1], ("c",), True, None),  # none left for the restore target
        (b"\x00" * 6, b"[0.5]", (), False, None),
        (b"\x00" * 6, good[1][:-1] + b",]", ("c",), False, None),
        (b"\x00" * 6, good[1], ("c",), False, {26: "1.0"}),  # an odd text past the end
    ]
    paths = [lambda rows: _service_families_text(_S_NAMES, _WIN_LABELS, ["l"], ["c"], rows)]
    if native.native is not None:
        paths.append(lambda rows: native.native.service_families(  # type: ignore[union-attr]
            _S_NAMES, _WIN_LABELS, ["l"], ["c"], rows))
    for write in paths:
        assert write([good])[0] == f'{_S_NAMES[0]}{{customers="c",l}} 1.0\n'
        for row in cases:
            with pytest.raises(ValueError):
                write([row])
        with pytest.raises((TypeError, ValueError)):
            write([(b"\x00", *good[1:])])  # flags short

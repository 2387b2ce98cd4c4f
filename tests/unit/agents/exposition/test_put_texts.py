"""``put_texts`` writes the moving components' pieces: the C loop and its Python twin.

``ComponentLines`` writes each moving component's window lines as pieces ``label +
value + next line's head`` at a stride in its chunk's list; ``_native.put_texts`` does in
C what ``_put_texts`` does in Python. Both must leave the same list, whatever the
strings (ASCII, as the exposition's, or not) and wherever the indexes point, and both
must refuse the same malformed calls.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.exposition.collector import _put_texts, put_texts
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


def test_malformed_calls_are_refused() -> None:
    out = ["x"] * 4
    with pytest.raises(ValueError):
        put_texts(out, [0], ["a"], ("p", "q"), ("r", "s"))  # 1 text for 2 windows
    if native.native is not None:
        with pytest.raises(IndexError):
            native.native.put_texts(out, [3], ["a", "b"], ("p", "q"), ("r", "s"))
        with pytest.raises(TypeError):
            native.native.put_texts(out, [0], [1.0, "b"], ("p", "q"), ("r", "s"))
    assert out == ["x"] * 4

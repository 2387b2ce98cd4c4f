"""``new_timeline()``: the C extension makes what ``Timeline()`` makes, slot by slot.

The C constructor reads its values from two ``Timeline()``s: a value both hold is
shared (the shared empties the derived columns start as, the untagged tag table), a
column each holds its own is made new and empty. A timeline made so must be
indistinguishable from one ``__init__`` made, and stay so when ``__init__`` changes.
"""

from __future__ import annotations

import gc
from array import array

import pytest

from streams import native
from streams.states import DOWN, UP
from streams.timeline import NO_TAG, Timeline, new_timeline

fast = native.native
pytestmark = pytest.mark.skipif(fast is None, reason="the C extension is not built")


def test_every_slot_is_what_init_sets() -> None:
    made, want, other = new_timeline(), Timeline(), new_timeline()
    assert type(made) is Timeline
    for name in Timeline.__slots__:
        got, exp = getattr(made, name), getattr(want, name)
        if type(exp) is array and exp is not getattr(Timeline(), name):
            # a column of its own: empty, of the same type, not shared with any other
            assert type(got) is array and got.typecode == exp.typecode and len(got) == 0, name
            assert got is not exp and got is not getattr(other, name), name
            assert not gc.is_tracked(got), name
        else:
            assert got is exp, name  # shared, as __init__ shares it
    assert not gc.is_tracked(made)


def test_a_timeline_made_in_c_works_as_one_made_by_init() -> None:
    a, b = new_timeline(), Timeline()
    for tl in (a, b):
        tl.append_state(10.0, DOWN, ("db-1",))
        tl.append_state(25.0, UP)
    assert list(a.ts) == list(b.ts) and list(a.st) == list(b.st)
    assert a.tags == b.tags and a.tags is not Timeline().tags  # its own table once tagged
    assert a.totals(0.0, 40.0) == b.totals(0.0, 40.0)
    out_a: dict[str, float] = {}
    out_b: dict[str, float] = {}
    a.attribute(0.0, 40.0, out_a)
    b.attribute(0.0, 40.0, out_b)
    assert out_a == out_b == {"db-1": 15.0}
    assert new_timeline().tags == [NO_TAG]  # the shared table was not changed


def test_a_class_it_cannot_copy_is_called_instead() -> None:
    """A class whose instances it cannot make from a template (a subclass, here with a
    list of its own per instance): the C side does not guess, it calls the class."""

    class Own(Timeline):
        __slots__ = ("extra",)

        def __init__(self) -> None:
            super().__init__()
            self.extra: list[int] = []

    try:
        fast.setup(Own, NO_TAG)
        made = fast.new_timeline()
        assert type(made) is Own and made.extra == [] and made.extra is not fast.new_timeline().extra
    finally:
        fast.setup(Timeline, NO_TAG)
    assert type(fast.new_timeline()) is Timeline

"""``_native.new_tracker``: stage 1's C loop makes what ``ComponentTracker(comp)``
makes, slot by slot, read from two trackers the class made (the one slot that holds
the argument takes the component, a timeline each holds its own is a new one, a value
both hold is shared). Anything else, a subclass, an argument that is not a str: the
class itself is called."""

from __future__ import annotations

import gc
import math

import pytest

from streams import native
from streams.batch import apply_columns
from streams.component import _COMPACT_EVERY, ComponentTracker
from streams.timeline import Timeline

fast = native.native
pytestmark = pytest.mark.skipif(fast is None, reason="the C extension is not built")


def test_every_slot_is_what_init_sets() -> None:
    comp = "db-1"
    made, want, other = (fast.new_tracker(ComponentTracker, comp), ComponentTracker(comp),
                         fast.new_tracker(ComponentTracker, "db-2"))
    assert type(made) is ComponentTracker
    assert made.component is comp and other.component == "db-2"
    for name in ComponentTracker.__slots__:
        got, exp = getattr(made, name), getattr(want, name)
        if isinstance(exp, Timeline):
            assert type(got) is Timeline and got is not other.history
            assert not gc.is_tracked(got)
            for slot in Timeline.__slots__:
                assert getattr(got, slot) == getattr(exp, slot), (name, slot)
        else:
            assert type(got) is type(exp) and got == exp, name
    assert made.newest == -math.inf
    assert gc.is_tracked(made) == gc.is_tracked(want)


def test_the_loop_makes_trackers_that_work_as_the_class_makes_them() -> None:
    """Stage 1's C loop (which makes the trackers with new_tracker) against the same
    events applied through ``ComponentTracker.apply`` on trackers the class made: every
    record the same, compaction included (more events than _COMPACT_EVERY)."""
    from streams.events import ComponentEvent
    from streams.states import State

    events = [(f"c{i % 3}", (i * 7) % 3, 100.0 + i) for i in range(3 * _COMPACT_EVERY + 5)]
    trackers: dict[str, ComponentTracker] = {}
    done = apply_columns(trackers, ([c for c, _, _ in events], [s for _, s, _ in events],
                                    [t for _, _, t in events]),
                         {"c0": ("s",), "c1": ("s",), "c2": ("s",)}, 60.0, {})
    assert done.created == ["c0", "c1", "c2"]
    ref: dict[str, ComponentTracker] = {}
    for c, s, t in events:
        ref.setdefault(c, ComponentTracker(c)).apply(ComponentEvent(c, State(s), t), 60.0)
    def state(t: ComponentTracker) -> tuple[object, ...]:
        return t.to_obj(), t._since_compact, t._clean

    assert {c: state(t) for c, t in trackers.items()} == {c: state(t) for c, t in ref.items()}


def test_a_subclass_or_another_argument_calls_the_class() -> None:
    calls: list[object] = []

    class Counted(ComponentTracker):
        __slots__ = ()

        def __init__(self, component: str) -> None:
            calls.append(component)
            super().__init__(component)

    made = fast.new_tracker(Counted, "x")
    assert type(made) is Counted and calls == ["x"]

    class Name(str):
        pass

    odd = Name("y")
    t = fast.new_tracker(ComponentTracker, odd)
    assert t.component is odd  # the class was called with it, as given
    with pytest.raises(TypeError):
        fast.new_tracker(ComponentTracker)

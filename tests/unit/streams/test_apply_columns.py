"""Stage 2's columns path (``ServiceTracker.apply_columns``): in C
(``_native.apply_columns``, straight from the decoded columns) and in Python
(``apply_many`` of ``in_time_order_columns``) a tracker ends up the same, bit for bit,
whatever the order of the batch, its late segments, unknown components and the size of
the model (at most 64 components: C bitmasks; more: Python ints)."""

from __future__ import annotations

import math
from array import array
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import native
from streams.catalog import ServiceModel
from streams.requirements import AllOf, AnyOf, AtLeast, Leaf, Requirement
from streams.service import ServiceTracker


def _model(n: int) -> ServiceModel:
    comps = [f"c{i}" for i in range(n)]
    half = max(1, n // 2)
    req = AllOf((AtLeast(half, tuple(Leaf(c) for c in comps[:max(half + 1, 2)])),
                 AnyOf(tuple(Leaf(c) for c in comps[max(half + 1, 2) - 1:]))))

    def resolve(name: str) -> Requirement:
        raise AssertionError(name)

    return ServiceModel.build("s", req, frozenset(comps), resolve)


_SMALL, _LARGE = _model(5), _model(70)

_batch = st.lists(st.tuples(st.sampled_from(["c0", "c1", "c2", "c3", "c4", "c69", "other"]),
                            st.sampled_from([1.0, 2.0, 2.0, 3.5, 4.0, 10.0, 11.0, 1e9]),
                            st.integers(0, 2)), min_size=1, max_size=40)


def _dump(tracker: ServiceTracker) -> bytes:
    return orjson.dumps(tracker.to_obj(), option=orjson.OPT_SORT_KEYS)


def _apply(batches: list[list[tuple[str, float, int]]], model: ServiceModel,
           as_array: bool) -> ServiceTracker:
    tracker = ServiceTracker("s")
    for batch in batches:
        comps = [c for c, _, _ in batch]
        starts: Any = [t for _, t, _ in batch]
        if as_array:
            starts = array("d", starts)
        tracker.apply_columns(comps, starts, None, bytes(s for _, _, s in batch), model)
    return tracker


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(_batch, min_size=1, max_size=4), large=st.booleans(),
       as_array=st.booleans())
def test_c_and_python_columns_paths_agree(batches: list[list[tuple[str, float, int]]],
                                          large: bool, as_array: bool) -> None:
    """Later batches may start before the frontier (late segments: the re-evaluation
    path), repeat an instant (append_state) or be out of order (the stable sort)."""
    model = _LARGE if large else _SMALL
    fast = native.native
    if fast is None:
        return  # the C loops are not built: nothing to compare
    c = _apply(batches, model, as_array)
    native.native = None
    try:
        py = _apply(batches, model, as_array)
        # and the definition: apply_many of the segments sorted by start, stably
        ref = ServiceTracker("s")
        for batch in batches:
            ref.apply_many(sorted(((g, t, math.inf, s) for g, t, s in batch),
                                  key=lambda seg: seg[1]), model)
    finally:
        native.native = fast
    assert _dump(c) == _dump(py) == _dump(ref)
    assert c.current == py.current == ref.current


def test_a_nan_start_takes_the_general_path() -> None:
    fast = native.native
    if fast is None:
        return
    tracker = ServiceTracker("s")
    assert fast.apply_columns(tracker, ["c0"], [math.nan], b"\x02", _SMALL) is False
    assert not tracker.components  # nothing applied


def test_a_bad_state_is_refused_before_any_segment_is_applied() -> None:
    fast = native.native
    if fast is None:
        return
    tracker = ServiceTracker("s")
    try:
        fast.apply_columns(tracker, ["c0", "c1"], array("d", [1.0, 2.0]), bytes([2, 7]), _SMALL)
    except ValueError as exc:
        assert "state 7" in str(exc)
    else:
        raise AssertionError("state 7 was applied")
    assert not tracker.components

"""Exactness of the engine's fast paths against the plain code they replace.

Each fast path must give the same result as the straightforward version, bit for bit:
the indexed requirement evaluators (vs the interpreted tree walk), the one-loop window
availability of the report (vs ``Timeline.window_totals`` + ``sla.availability``), and
the cached component-id check of ``parse_event`` (vs the regex alone).
"""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import sla
from streams.catalog import ServiceModel
from streams.events import COMPONENT_ID, InvalidEvent, parse_event
from streams.report import _WINDOW_NAMES, _WINDOW_SIZES, window_availability
from streams.requirements import (
    AllOf,
    AnyOf,
    Leaf,
    Requirement,
    blame,
    compile_indexed,
    evaluate,
)
from streams.states import DOWN, MAINTENANCE, UP, State
from streams.timeline import Timeline
from tests.support.trees import COMPS, STATES, trees

#: Every test here runs on the C loops and on the pure-Python ones (conftest.engine_path).
pytestmark = pytest.mark.usefixtures("engine_path")

BASE: Requirement = AllOf((AnyOf((Leaf("d"), Leaf("e"))),))


def _resolve(name: str) -> Requirement:
    assert name == "base"
    return BASE


@settings(max_examples=300, deadline=None)
@given(tree=trees(), states=st.lists(st.sampled_from(STATES), min_size=5, max_size=5))
def test_indexed_evaluators_match_the_tree_walk(tree: Requirement, states: list[State]) -> None:
    req = tree if isinstance(tree, AllOf) else AllOf((tree,))
    slots, state_ix, blame_ix = compile_indexed(req, _resolve)
    by_name = dict(zip(COMPS, states, strict=True))
    values = [int(by_name[c]) for c in slots]
    if not evaluate(req, by_name, _resolve, planned=False):
        want = int(DOWN)
    elif not evaluate(req, by_name, _resolve, planned=True):
        want = int(MAINTENANCE)
    else:
        want = int(UP)
    assert state_ix(values) == want
    assert blame_ix(values, slots) == blame(req, by_name, _resolve)
    # the mapping-based wrappers of ServiceModel agree too
    model = ServiceModel.build("s", req, frozenset(slots), _resolve)
    assert model.state_of({c: by_name[c] for c in slots}) == want
    assert model.blame({c: by_name[c] for c in slots}) == blame(req, by_name, _resolve)


def _reference_availability(tl: Timeline, now: float) -> dict[str, float]:
    """What the report computed before the one-loop version."""
    if not tl.ts or (len(tl.ts) == 1 and tl.st[0] == UP):
        return dict.fromkeys(_WINDOW_NAMES, 1.0)
    return {
        name: sla.availability(up, down)
        for name, (up, down, _) in zip(_WINDOW_NAMES, tl.window_totals(now, _WINDOW_SIZES), strict=True)
    }


NOW = 1_709_251_200.0
OFFSETS = (0.0, 1.0, 299.0, 300.0, 301.0, 1800.0, 3600.0, 21600.0, 86400.0, 259200.0,
           604800.0, 2592000.0, 2592001.0, 40 * 86400.0)


@settings(max_examples=400, deadline=None)
@given(points=st.lists(
    st.tuples(
        st.sampled_from(OFFSETS) | st.floats(-300.0, 50 * 86400.0, allow_nan=False),
        st.sampled_from(STATES),
    ),
    max_size=12,
))
def test_window_availability_is_bit_identical(points: list[tuple[float, State]]) -> None:
    tl = Timeline()
    for back, state in sorted(points, key=lambda p: -p[0]):
        tl.append_state(NOW - back, int(state))
    assert window_availability(tl, NOW) == _reference_availability(tl, NOW)


@pytest.mark.parametrize("component", ["ok-1", "bad id", "", "x" * 201, "ü", "a/b@c:d"])
def test_parse_event_id_check_is_stable_across_repeats(component: str) -> None:
    raw = orjson.dumps({"component": component, "state": "up", "ts": NOW})
    results = []
    for _ in range(3):  # the first sighting fills the cache, later ones read it
        try:
            results.append(parse_event(raw, NOW).component)
        except InvalidEvent as exc:
            results.append(exc.reason)
    valid = COMPONENT_ID.fullmatch(component) is not None
    assert results == [component if valid else results[0]] * 3
    assert (results[0] == component) == valid


def _attribute_by_walking(tl: Timeline, start: float, end: float) -> dict[str, float]:
    """The definition: every down piece in [start, end], its seconds split over its tag."""
    out: dict[str, float] = {}
    for a, b, tag in tl.down_points(start, end):
        if tag and b > a:
            for comp in tag:
                out[comp] = out.get(comp, 0.0) + (b - a) / len(tag)
    return out


TAGS = ((), ("a",), ("b",), ("a", "b"), ("a", "b", "c"))


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(st.tuples(
        st.sampled_from(("append", "append", "assign", "prune")),
        st.floats(0.0, 100.0, allow_nan=False),
        st.floats(0.0, 30.0, allow_nan=False),
        st.sampled_from(STATES),
        st.sampled_from(TAGS),
    ), max_size=25),
    windows=st.lists(st.tuples(st.floats(-10.0, 130.0), st.floats(0.0, 140.0)), min_size=1, max_size=4),
)
def test_attribution_index_matches_the_walk(
    steps: list[tuple[str, float, float, State, tuple[str, ...]]],
    windows: list[tuple[float, float]],
) -> None:
    """Timeline.attribute (running sums per component, kept up to date through appends,
    overwrites and pruning) equals walking the pieces, for any window, between edits."""
    tl = Timeline()
    for op, t, length, state, tag in steps:
        tag = tag if state == DOWN else ()
        if op == "append":
            tl.append_state(max(t, tl.last_ts if tl.ts else t), int(state), tag)
        elif op == "assign":
            tl.assign(t, t + length if length else math.inf, [(t, int(state), tag)])
        else:
            tl.prune_before(t)
        for start, width in windows:
            got: dict[str, float] = {}
            tl.attribute(start, start + width, got)
            want = _attribute_by_walking(tl, start, start + width)
            assert got.keys() == want.keys()
            for comp, value in want.items():
                assert got[comp] == pytest.approx(value, rel=1e-12, abs=1e-9)

"""``Timeline._low``: every edit but an append lowers it to the first point it touched.

The checkpoint writer (agents/worker/patchlog.py) sets ``_low`` to a timeline's length
when it stores it and later sends only the columns from ``_low`` on (and the tags added,
unless ``_low`` is 0). So after any sequence of edits, the points before ``_low`` and
the tag table must be exactly as they were at the mark. Generated edit sequences on bare
timelines, on component trackers (in-order and late events, compactions, prunes) and on
service trackers (the C loops and the Python ones, ``engine_path``) check that after
every step.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.catalog import parse_catalog
from streams.component import ComponentTracker
from streams.events import ComponentEvent
from streams.service import ServiceTracker
from streams.states import State
from streams.timeline import Timeline

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

Snap = tuple[bytes, bytes, bytes, list[Any]]


def snap(tl: Timeline) -> Snap:
    return tl.ts.tobytes(), tl.st.tobytes(), tl.tag.tobytes(), list(tl.tags)


def mark(tl: Timeline) -> Snap:
    tl._low = len(tl)
    return snap(tl)


def holds(tl: Timeline, at_mark: Snap) -> None:
    """What the writer relies on: the prefix before ``_low`` and the tags as marked."""
    ts, sts, tag, tags = at_mark
    low = tl._low
    assert 0 <= low <= len(ts) // 8, (low, len(ts) // 8)
    assert low <= len(tl)
    assert tl.ts.tobytes()[:8 * low] == ts[:8 * low]
    assert tl.st.tobytes()[:low] == sts[:low]
    assert tl.tag.tobytes()[:4 * low] == tag[:4 * low]
    if low > 0:
        assert tl.tags[:len(tags)] == tags


TAGS = [(), ("a",), ("b",), ("a", "b"), ("c",)]
times = st.integers(0, 40).map(float)
ops = st.one_of(
    st.tuples(st.just("append"), times, st.integers(0, 2), st.sampled_from(TAGS)),
    st.tuples(st.just("assign"), times, st.integers(1, 10),
              st.lists(st.tuples(st.integers(0, 2), st.sampled_from(TAGS)), min_size=1,
                       max_size=4)),
    st.tuples(st.just("prune"), times),
    st.tuples(st.just("compact_tags")),
    st.tuples(st.just("mark")),
)


@SETTINGS
@given(st.lists(ops, max_size=40))
def test_edits_of_a_timeline_stay_above_its_watermark(steps: list[Any]) -> None:
    tl = Timeline()
    at_mark = mark(tl)
    for op in steps:
        kind = op[0]
        if kind == "append":
            t = max(op[1], tl.last_ts) if tl.ts else op[1]
            tl.append_state(t, op[2], op[3] if op[2] == 2 else ())
        elif kind == "assign":
            start, length, pts = op[1], op[2], op[3]
            end = math.inf if length == 10 else start + length
            step = (end - start) / len(pts) if end != math.inf else 1.0
            tl.assign(start, end, [(start + k * step, s, g if s == 2 else ())
                                   for k, (s, g) in enumerate(pts)])
        elif kind == "prune":
            tl.prune_before(op[1])
        elif kind == "compact_tags":
            tl.compact_tags()
        else:
            at_mark = mark(tl)
        holds(tl, at_mark)


events = st.lists(st.tuples(st.integers(0, 3000).map(float), st.integers(0, 2),
                            st.sampled_from(["step", "prune", "mark"])), max_size=120)


@SETTINGS
@given(events)
def test_a_component_history_stays_above_its_watermark(steps: list[Any]) -> None:
    """In-order and late events (lateness 600 s), compactions every 64 points, prunes."""
    tracker = ComponentTracker("c")
    at_mark = mark(tracker.history)
    clock = 0.0
    for t, s, what in steps:
        clock += 25.0
        if what == "prune":
            tracker.prune(clock - 900.0, 600.0)
        elif what == "mark":
            at_mark = mark(tracker.history)
        else:
            ts = clock if t > 1500 else clock - t / 5
            tracker.apply(ComponentEvent("c", State(s), ts), 600.0)
        holds(tracker.history, at_mark)


CATALOG = parse_catalog({
    "components": {f"c{i}": {"team": "t"} for i in range(4)},
    "services": {"s": {"kind": "external", "customers": ["x"],
                       "sla": {"target": 0.99, "period": "30d"},
                       "requires": [{"at_least": 2, "of": ["c0", "c1", "c2"]}, {"any": ["c2", "c3"]}]}},
}, "test")

segments = st.lists(st.tuples(st.sampled_from(["c0", "c1", "c2", "c3"]), st.integers(0, 400),
                              st.sampled_from([0, 0, 0, 5, 30]), st.integers(0, 2),
                              st.booleans()), max_size=60)


@SETTINGS
@given(segments)
def test_a_service_and_its_copies_stay_above_their_watermarks(engine_path: str,
                                                               steps: list[Any]) -> None:
    """Segments in order and in the past (the C loops or the Python ones), prunes, marks."""
    model = CATALOG.models["s"]
    tracker = ServiceTracker("s")
    marks: dict[int, Snap] = {}

    def mark_all() -> None:
        marks.clear()
        for tl in (*tracker.components.values(), tracker.timeline):
            marks[id(tl)] = mark(tl)

    def check() -> None:
        for tl in (*tracker.components.values(), tracker.timeline):
            if id(tl) in marks:
                holds(tl, marks[id(tl)])
            else:  # new since the mark: written whole
                assert tl._low == 0

    clock = 0.0
    for comp, back, length, s, flag in steps:
        clock += 7.0
        start = clock - back if back > 200 else clock
        end = math.inf if not length or start == clock else start + length
        tracker.apply_many([(comp, float(start), end, s)], model)
        check()
        if flag and back % 5 == 0:
            mark_all()
        elif flag and back % 7 == 0:
            tracker.prune(clock - 300.0)
            check()

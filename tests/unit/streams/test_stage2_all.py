"""``stage2.apply_all``, stage 2's loop over a fetch's services (in C:
``_native.apply_services``), against what it replaces: ``stage2.apply`` called per
service as the worker called it. Generated catalogs (a reload between fetches, so
trackers are bound to an older model; services that left the catalog), new and known
trackers, several parts per service, open and closed segments, times as lists and as
arrays: every tracker the same, bit for bit, and the same services made and dropped."""

from __future__ import annotations

import math
from array import array
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import native, stage2
from streams.catalog import Catalog, parse_catalog
from streams.service import ServiceTracker
from tests.strategies import catalogs

_TIMES = st.sampled_from([0.0, 1.0, 2.0, 2.0, 3.5, 60.0, 61.0, 3600.0])


@st.composite
def _columns(draw: st.DrawFn, comps: list[str]) -> tuple[Any, ...]:
    n = draw(st.integers(1, 12))
    cs = draw(st.lists(st.sampled_from(comps), min_size=n, max_size=n))
    starts: Any = draw(st.lists(_TIMES, min_size=n, max_size=n))
    ends: Any = None
    if draw(st.integers(0, 3)) == 0:  # closed segments (a redelivery's repair)
        ends = [s + draw(st.sampled_from([0.5, 30.0, math.inf])) for s in starts]
    states = bytes(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    if draw(st.booleans()):
        starts = array("d", starts)
        ends = None if ends is None else array("d", ends)
    return cs, starts, ends, states


@st.composite
def _fetches(draw: st.DrawFn) -> tuple[list[Catalog], list[list[tuple[str, Any]]]]:
    cats = [parse_catalog(draw(catalogs(max_components=5, max_services=4))) for _ in range(2)]
    names = sorted({*cats[0].services, *cats[1].services, "left"})
    comps = sorted({*cats[0].components, *cats[1].components, "unknown"})
    fetches = []
    for _ in range(draw(st.integers(1, 4))):
        chosen = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names),
                               unique=True))
        fetches.append([(name, draw(_columns(comps))) for name in chosen])
    return cats, fetches


def _dump(trackers: dict[str, ServiceTracker]) -> dict[str, bytes]:
    return {name: orjson.dumps(t.to_obj(), option=orjson.OPT_SORT_KEYS)
            for name, t in trackers.items()}


def _per_service(cats: list[Catalog], fetches: list[list[tuple[str, Any]]]
                 ) -> tuple[dict[str, ServiceTracker], list[list[str]], list[list[str]]]:
    """The loop ``apply_all`` replaces: ``stage2.apply`` per service."""
    trackers: dict[str, ServiceTracker] = {}
    made, dropped = [], []
    for k, fetch in enumerate(fetches):
        catalog = cats[k % 2]
        created, gone = [], []
        for name, cols in fetch:
            before = trackers.get(name)
            tracker = stage2.apply(before, name, *cols, catalog)
            if tracker is None:
                gone.append(name)
            elif before is None:
                trackers[name] = tracker
                created.append(name)
        made.append(created)
        dropped.append(gone)
    return trackers, made, dropped


def _all(cats: list[Catalog], fetches: list[list[tuple[str, Any]]]
         ) -> tuple[dict[str, ServiceTracker], list[list[str]], list[list[str]]]:
    trackers: dict[str, ServiceTracker] = {}
    made, dropped = [], []
    for k, fetch in enumerate(fetches):
        done = stage2.apply_all(list(fetch), trackers, cats[k % 2])
        made.append(done.created)
        dropped.append(done.gone)
    return trackers, made, dropped


@settings(max_examples=300, deadline=None)
@given(case=_fetches())
def test_apply_all_is_apply_per_service(case: tuple[list[Catalog], list[list[tuple[str, Any]]]]
                                        ) -> None:
    cats, fetches = case
    ref, ref_made, ref_gone = _per_service(cats, fetches)
    got, made, gone = _all(cats, fetches)
    assert (_dump(got), made, gone) == (_dump(ref), ref_made, ref_gone)
    fast = native.native
    native.native = None  # the Python loop of apply_all (and the Python engine)
    try:
        py, py_made, py_gone = _all(cats, fetches)
        pref, _, _ = _per_service(cats, fetches)
    finally:
        native.native = fast
    assert (_dump(py), py_made, py_gone) == (_dump(pref), ref_made, ref_gone)
    assert _dump(py) == _dump(got)


def test_apply_all_uses_the_trackers_given_and_adds_new_ones() -> None:
    cat = parse_catalog({"components": {"a": {"team": "t"}, "b": {"team": "t"}},
                         "services": {"s": {"kind": "external", "customers": ["x"],
                                            "sla": {"target": 0.999, "period": "month"},
                                            "restore_time": "30m", "requires": ["a", "b"]}}})
    known = ServiceTracker("s")
    trackers = {"s": known}
    done = stage2.apply_all([("s", (["a"], [10.0], None, b"\x02")),
                             ("gone", (["a"], [10.0], None, b"\x02"))], trackers, cat)
    assert trackers == {"s": known} and done.created == [] and done.gone == ["gone"]
    assert known.timeline.state_at(11.0) == 2  # all of a and b: a down is down
    done = stage2.apply_all([("s", (["b"], [20.0], None, b"\x02"))], {}, cat)
    assert done.created == ["s"]


@pytest.mark.skipif(native.native is None, reason="the C loops are not built")
def test_apply_services_refuses_items_of_another_shape() -> None:
    cat = parse_catalog({"components": {"a": {"team": "t"}},
                         "services": {"s": {"kind": "external", "customers": ["x"],
                                            "sla": {"target": 0.999, "period": "month"},
                                            "restore_time": "30m", "requires": ["a"]}}})
    for bad in (["s"], [("s", (["a"], [1.0], b"\x02"))], [("s", ["a", [1.0], None, b"\x02"])]):
        with pytest.raises(TypeError):
            stage2.apply_all(bad, {}, cat)  # type: ignore[arg-type]

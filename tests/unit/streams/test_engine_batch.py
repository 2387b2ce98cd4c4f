"""Exactness of the batch paths: ``ServiceTracker.apply_many`` against ``apply`` one
segment at a time, and the bitmask evaluators against the tree walk.

``apply_many`` must leave a tracker exactly where applying the same segments one by one
does (the same points, bit for bit), whatever the batch boundaries, for segment streams
as the engine emits them, interleaved and replayed as the repartition topic delivers them.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.worker import segwire
from streams import stage2
from streams.catalog import ServiceModel
from streams.requirements import (
    AllOf,
    AnyOf,
    AtLeast,
    Leaf,
    Requirement,
    blame,
    compile_indexed,
    compile_masks,
    evaluate,
    indexed_slots,
    mask_shape,
)
from streams.service import in_time_order, in_time_order_columns
from streams.states import DOWN, MAINTENANCE, UP, State
from tests.strategies import (
    ENGINE_SETTINGS,
    Scenario,
    apply_all,
    build_engine,
    long_streams,
    scenarios,
)
from tests.support.trees import COMPS, STATES, trees

#: Every test here runs on the C loops and on the pure-Python ones (conftest.engine_path).
pytestmark = pytest.mark.usefixtures("engine_path")

ENGINE = ENGINE_SETTINGS

BASE: Requirement = AllOf((AnyOf((Leaf("d"), Leaf("e"))), Leaf("e")))


def _resolve(name: str) -> Requirement:
    assert name == "base"
    return BASE


def _masks(names: tuple[str, ...], by_name: dict[str, State]) -> tuple[int, int]:
    d = m = 0
    for i, c in enumerate(names):
        if by_name[c] == DOWN:
            d |= 1 << i
        if by_name[c] != UP:
            m |= 1 << i
    return d, m


@settings(max_examples=400, deadline=None)
@given(tree=trees(), states=st.lists(st.sampled_from(STATES), min_size=5, max_size=5),
       order=st.permutations(COMPS))
def test_mask_evaluators_match_the_tree_walk(
    tree: Requirement, states: list[State], order: list[str]
) -> None:
    req = tree if isinstance(tree, AllOf) else AllOf((tree,))
    by_name = dict(zip(COMPS, states, strict=True))
    names = tuple(order)  # any bit numbering
    state_fn, blame_fn = compile_masks(req, _resolve, names)
    d, m = _masks(names, by_name)
    if not evaluate(req, by_name, _resolve, planned=False):
        want = int(DOWN)
    elif not evaluate(req, by_name, _resolve, planned=True):
        want = int(MAINTENANCE)
    else:
        want = int(UP)
    assert state_fn(d, m) == want
    blamed = blame_fn(d)
    assert {c for i, c in enumerate(names) if blamed >> i & 1} == set(blame(req, by_name, _resolve))
    # the model's wrappers: sorted names, memoised, and the list-based fallback agrees
    assert indexed_slots(req, _resolve) == compile_indexed(req, _resolve)[0]
    model = ServiceModel.build("s", req, frozenset(COMPS), _resolve)
    md, mm = _masks(model.mask_names, by_name)
    assert model.state_mask(md, mm) == want
    assert model.blame_mask(md) == blame(req, by_name, _resolve)
    assert model.blame_mask(md) == blame(req, by_name, _resolve)  # from the cache
    slow = ServiceModel(model.name, model.components, model.state_of, model.blame, model.requires,
                        model.slots, model.index, model.state_ix, model.blame_ix)
    assert slow.state_mask(md, mm) == want
    assert slow.blame_mask(md) == blame(req, by_name, _resolve)
    # the C loop's plan: the requirement as a program, or the Python function without one
    from streams import native

    if native.native is not None:
        assert model.program is not None and slow.program is None
        assert native.native.evaluate_plan(model.plan, md, mm) == want
        assert native.native.evaluate_plan(slow.plan, md, mm) == want
        # the blame the C loop computes from the program when the memo does not hold it
        assert native.native.blame_plan(model.plan, md) == blame(req, by_name, _resolve)


def _segments_by_service(sc: Scenario) -> tuple[Any, dict[str, list[Any]]]:
    """The segments the engine forwards to each service, in order."""
    engine = build_engine(sc.catalog, 600.0)
    sent: dict[str, list[Any]] = {}
    forward = engine.forward

    def record(segment: Any, services: tuple[str, ...]) -> None:
        for name in services:
            sent.setdefault(name, []).append(segment)
        forward(segment, services)

    engine.forward = record
    apply_all(engine, sc.events)
    return engine, sent


def _dump(tracker: Any) -> bytes:
    return orjson.dumps(tracker.to_obj(), option=orjson.OPT_SORT_KEYS)


class _PlainTracker:
    """The definition, with no fast path: overwrite the component's copy on the
    segment's interval, then evaluate the list-based requirement at every point of
    every copy inside it (what ``ServiceTracker`` did for out-of-order segments)."""

    def __init__(self) -> None:
        from streams.timeline import Timeline

        self.components: dict[str, Timeline] = {}
        self.timeline = Timeline()

    def apply(self, seg: Any, model: ServiceModel) -> None:
        from streams.timeline import Timeline

        comp, start, end, state = seg
        tl = self.components.setdefault(comp, Timeline())
        tl.assign(start, end, [(start, int(state), ())])
        times = {start}
        for c in model.slots:
            if c in self.components:
                times.update(self.components[c].points_between(start, end))
        points: list[tuple[float, int, tuple[str, ...]]] = []
        for t in sorted(times):
            states = [int(self.components[c].state_at(t)) if c in self.components else int(UP)
                      for c in model.slots]
            st_ = model.state_ix(states)
            tag = model.blame_ix(states, model.slots) if st_ == int(DOWN) else ()
            if not points or points[-1][1:] != (st_, tag):
                points.append((t, st_, tag))
        self.timeline.assign(start, end, points)

    def dump(self) -> Any:
        return ({c: (list(tl.ts), [int(s) for s in tl.st]) for c, tl in self.components.items()},
                (list(self.timeline.ts), [int(s) for s in self.timeline.st], self.timeline.tag_list()))


def _points(tracker: Any) -> Any:
    return ({c: (list(tl.ts), [int(s) for s in tl.st]) for c, tl in tracker.components.items()},
            (list(tracker.timeline.ts), [int(s) for s in tracker.timeline.st], tracker.timeline.tag_list()))


def _check_batches(sc: Scenario, data: st.DataObject) -> None:
    from streams.component import Segment
    from streams.service import ServiceTracker

    engine, sent = _segments_by_service(sc)
    catalog = engine.catalog
    for name, segments in sent.items():
        model = catalog.models[name]
        # interleave components and replay suffixes, as the repartition topic may
        queues: dict[str, list[Any]] = {}
        for seg in segments:
            queues.setdefault(seg.component, []).append(seg)
        order: list[Any] = []
        while any(queues.values()):
            comp = data.draw(st.sampled_from(sorted(c for c, q in queues.items() if q)))
            order.append(queues[comp].pop(0))
        if order and data.draw(st.booleans(), label="replay"):
            order += order[data.draw(st.integers(0, len(order) - 1), label="from"):]
        for stream in (segments, order):
            one = ServiceTracker(name)
            for seg in stream:
                one.apply(seg, model)
            many = ServiceTracker(name)
            done = 0
            while done < len(stream):
                upto = data.draw(st.integers(done + 1, len(stream)), label="batch")
                batch = stream[done:upto]
                if data.draw(st.booleans(), label="plain tuples"):
                    batch = [(s.component, s.start, s.end, int(s.state)) for s in batch]
                many.apply_many(batch, model)
                done = upto
            assert _dump(many) == _dump(one), name
            plain = _PlainTracker()
            for seg in stream:
                plain.apply(seg, model)
            assert _points(one) == plain.dump(), name
            assert many.current == one.current
            if stream is segments:  # in engine order: the engine's own tracker
                assert _dump(one) == _dump(engine.services[name]), name
            # and Segment objects through the wire format give the same
            wire = ServiceTracker(name)
            wire.apply_many([Segment.from_obj(orjson.loads(orjson.dumps(s.to_obj()))) for s in stream],
                            model)
            assert _dump(wire) == _dump(one), name
            # and as stage 2 gets them: segments messages of a few segments each, each
            # fetch decoded and sorted by in_time_order
            # (as tuples, and as the columns the pipeline applies them from)
            staged = ServiceTracker(name)
            columns = ServiceTracker(name)
            wired = ServiceTracker(name)
            done = 0
            while done < len(stream):
                upto = data.draw(st.integers(done + 1, len(stream)), label="fetch")
                fetched: list[Any] = []
                parts: list[segwire.Columns] = []
                many: list[segwire.Columns] = []
                for k in range(done, upto, 3):
                    part = [(s.component, s.start, s.end, int(s.state))
                            for s in stream[k:min(k + 3, upto)]]
                    fetched += segwire.decode(segwire.encode(part))
                    parts.append(segwire.decode_columns(segwire.encode(part)))
                    # what stage 2 applies: the messages of many services (times as
                    # arrays), concatenated, applied from the columns (C: apply_columns)
                    for raw in segwire.encode_many([("other", [("x", 0.0, math.inf, 2)]),
                                                    (name, part)], 1 << 20):
                        many += [cols for svc, cols in segwire.decode_many(raw) if svc == name]
                staged.apply_many(in_time_order(fetched), model)
                columns.apply_many(in_time_order_columns(*segwire.concat(parts)), model)
                got = stage2.apply(wired, name, *segwire.concat(many), engine.catalog)
                assert got is wired
                done = upto
            assert _dump(staged) == _dump(one), name
            assert _dump(columns) == _dump(one), name
            assert _dump(wired) == _dump(one), name
            assert wired.current == one.current


@ENGINE
@given(sc=scenarios(allow_unknown=False), data=st.data())
def test_apply_many_equals_apply_one_by_one(sc: Scenario, data: st.DataObject) -> None:
    _check_batches(sc, data)


@settings(ENGINE, max_examples=max(10, (ENGINE.max_examples or 100) // 5))
@given(sc=long_streams(), data=st.data())
def test_apply_many_equals_apply_on_long_streams(sc: Scenario, data: st.DataObject) -> None:
    _check_batches(sc, data)


def _raw(e: Any, data: st.DataObject) -> bytes:
    """The wire form of an event, in one of the shapes publishers send (or a broken one)."""
    kind = data.draw(st.sampled_from(("plain", "plain", "plain", "upper", "rfc3339", "int",
                                      "extra", "bad-source", "broken", "future", "null")))
    obj: dict[str, Any] = {"component": e.component, "state": e.state, "ts": float(e.ts)}
    if kind == "upper":
        obj["state"] = e.state.upper()
    elif kind == "rfc3339":
        from datetime import UTC, datetime

        obj["ts"] = datetime.fromtimestamp(e.ts, UTC).isoformat()
    elif kind == "int" and float(e.ts).is_integer():
        obj["ts"] = int(e.ts)
    elif kind == "extra":
        obj.update(source="nagios", id="x1")
    elif kind == "bad-source":
        obj["source"] = 3
    elif kind == "broken":
        return orjson.dumps(obj)[:-1]
    elif kind == "future":
        obj["ts"] = 1e12
    elif kind == "null":
        obj["state"] = None
    return orjson.dumps(obj)


def _engine_state(engine: Any) -> Any:
    return (
        {c: _dump(t) for c, t in engine.components.items()},
        {s: _dump(t) for s, t in engine.services.items()},
        dict(engine.counts),
        engine.unmapped.count(),
    )


@ENGINE
@given(sc=scenarios(), data=st.data())
def test_apply_raw_many_equals_apply_raw(sc: Scenario, data: st.DataObject) -> None:
    from streams import events

    raws = [_raw(e, data) for e in sc.events]
    if data.draw(st.booleans(), label="cold id cache"):
        events._valid_ids.clear()
    one = build_engine(sc.catalog, 600.0)
    want = [one.apply_raw(r, sc.now) for r in raws]
    if data.draw(st.booleans(), label="cold id cache again"):
        events._valid_ids.clear()
    many = build_engine(sc.catalog, 600.0)
    got: list[Any] = []
    done = 0
    while done < len(raws):
        upto = data.draw(st.integers(done + 1, len(raws)), label="batch")
        got += many.apply_raw_many(raws[done:upto], sc.now)
        done = upto
    assert got == want
    assert _engine_state(many) == _engine_state(one)
    from tests.strategies import diff_engine_reports

    assert not diff_engine_reports(one.report(sc.now), many.report(sc.now))


_seg_tuples = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                                 st.sampled_from([1.0, 2.0, 3.0, 4.5]),
                                 st.sampled_from([math.inf, math.inf, 5.0]),
                                 st.integers(0, 2)), max_size=12)


@given(segs=_seg_tuples, all_open=st.booleans(), presorted=st.booleans())
def test_in_time_order_columns_is_in_time_order(segs: list[Any], all_open: bool,
                                                presorted: bool) -> None:
    if all_open:
        segs = [(c, s, math.inf, t) for c, s, _, t in segs]
    if presorted:
        segs.sort(key=lambda g: g[1])
    comps, starts, ends, states = ([g[k] for g in segs] for k in range(4))
    got = list(in_time_order_columns(comps, starts, None if all_open else ends, bytes(states)))
    assert got == list(in_time_order(segs))


def _renamed(node: Requirement, to: dict[str, str]) -> Requirement:
    if isinstance(node, Leaf):
        return Leaf(to[node.component])
    if isinstance(node, AllOf):
        return AllOf(tuple(_renamed(i, to) for i in node.items))
    if isinstance(node, AnyOf):
        return AnyOf(tuple(_renamed(i, to) for i in node.items))
    if isinstance(node, AtLeast):
        return AtLeast(node.k, tuple(_renamed(i, to) for i in node.items))
    return node  # the service reference


@settings(max_examples=200, deadline=None)
@given(tree=trees(), states=st.lists(st.sampled_from(STATES), min_size=5, max_size=5))
def test_one_shape_over_other_components_is_compiled_once_and_still_exact(
    tree: Requirement, states: list[State]
) -> None:
    """Services of one shape share their compiled functions and program (a catalog of
    thousands of services of ten components builds each model from its shape's), so a
    service over other components, built second, must still be the tree walk of its own
    components."""
    req = tree if isinstance(tree, AllOf) else AllOf((tree,))
    to = {c: f"z{c}" for c in COMPS}  # the same order: the same bits, the same shape
    other = _renamed(req, to)
    base_other = _renamed(BASE, to)

    def resolve_other(name: str) -> Requirement:
        assert name == "base"
        return base_other

    first = ServiceModel.build("s1", req, frozenset(COMPS), _resolve)
    second = ServiceModel.build("s2", other, frozenset(to.values()), resolve_other)
    assert (mask_shape(req, _resolve, first.mask_names)
            == mask_shape(other, resolve_other, second.mask_names))
    for model, resolve, names in ((first, _resolve, COMPS),
                                  (second, resolve_other, tuple(to.values()))):
        by_name = dict(zip(names, states, strict=True))
        r = model.requires
        d, m = _masks(model.mask_names, by_name)
        if not evaluate(r, by_name, resolve, planned=False):
            want = int(DOWN)
        elif not evaluate(r, by_name, resolve, planned=True):
            want = int(MAINTENANCE)
        else:
            want = int(UP)
        assert model.state_mask(d, m) == want
        assert model.blame_mask(d) == blame(r, by_name, resolve)

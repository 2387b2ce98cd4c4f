"""The engine against the brute-force reference (tests/reference.py), on generated
catalogs and event streams.

(a) any arrival order: every number of every service and component, every window and
    SLA period, equals the reference; outcomes are classified as the reference does.
(b) reorderings within allowed_lateness give the same report as sorted arrival.
(c) re-sending events changes nothing but the `duplicate` (or `late`) count.
(d) late events are counted `late` and change nothing.
(e) trackers serialized and restored mid-stream give the same results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.reference import (
    RANK,
    Ev,
    RefCatalog,
    StepFunctions,
    classify,
    reference_report,
)
from tests.reference import outages as ref_outages
from tests.strategies import (
    ENGINE_SETTINGS,
    Scenario,
    apply_all,
    build_engine,
    diff_engine_reports,
    diff_reports,
    jittered_order,
    long_streams,
    scenarios,
)

#: Every test here runs on the C loops and on the pure-Python ones (conftest.engine_path).
pytestmark = pytest.mark.usefixtures("engine_path")

ENGINE = ENGINE_SETTINGS

LATENESS = 600.0


def _explain(sc: Scenario, arrivals: list[Ev]) -> str:
    lines = [f"now={sc.now} step={sc.step}", f"catalog={sc.catalog}"]
    lines += [f"  {e.component} {e.state} {e.ts}" for e in arrivals]
    return "\n".join(lines)


def _check_against_reference(sc: Scenario, arrivals: list[Ev]) -> Any:
    engine = build_engine(sc.catalog, LATENESS)
    got = apply_all(engine, arrivals)
    cat = RefCatalog.from_dict(sc.catalog)
    want, _ = classify(cat, arrivals, LATENESS)
    assert got == want, f"outcomes differ\n{_explain(sc, arrivals)}"
    report = engine.report(sc.now)
    ref = reference_report(cat, arrivals, sc.now, LATENESS)
    problems = diff_reports(ref, report)
    assert not problems, "\n".join([*problems, _explain(sc, arrivals)])
    counts = {k: v for k, v in report.events_total.items() if v}
    assert counts == ref.events
    assert report.unmapped_components == ref.unmapped
    return report


@ENGINE
@given(sc=scenarios())
def test_a_any_arrival_order_matches_reference(sc: Scenario) -> None:
    _check_against_reference(sc, sc.events)


@ENGINE
@given(sc=scenarios(allow_unknown=False), data=st.data())
def test_b_reordering_within_lateness_changes_nothing(sc: Scenario, data: st.DataObject) -> None:
    ordered = sorted(sc.events, key=lambda e: (e.ts, RANK[e.state]))
    jitter = data.draw(
        st.lists(st.floats(0.0, 1.0), min_size=len(ordered), max_size=len(ordered)),
        label="jitter",
    )
    shuffled = jittered_order(ordered, jitter, LATENESS)
    cat = RefCatalog.from_dict(sc.catalog)
    outcomes, _ = classify(cat, shuffled, LATENESS)
    assert "late" not in outcomes  # the generator's promise
    a = _check_against_reference(sc, ordered)
    b = _check_against_reference(sc, shuffled)
    problems = diff_engine_reports(a, b)
    assert not problems, "\n".join(problems)
    assert a.events_total == b.events_total


@ENGINE
@given(sc=scenarios(), data=st.data())
def test_c_resending_events_is_a_duplicate_and_changes_nothing(
    sc: Scenario, data: st.DataObject
) -> None:
    base = build_engine(sc.catalog, LATENESS)
    apply_all(base, sc.events)
    if not sc.events:
        return
    picks = data.draw(
        st.lists(st.integers(0, len(sc.events) - 1), max_size=len(sc.events) * 2), label="picks"
    )
    # each copy goes somewhere after its original (which earlier copies may have moved)
    slots: list[tuple[int, bool]] = [(i, False) for i in range(len(sc.events))]
    for i in picks:
        at = slots.index((i, False))
        pos = data.draw(st.integers(at + 1, len(slots)), label="pos")
        slots.insert(pos, (i, True))
    arrivals = [sc.events[i] for i, _ in slots]
    engine = build_engine(sc.catalog, LATENESS)
    apply_all(engine, arrivals)
    a, b = base.report(sc.now), engine.report(sc.now)
    assert not diff_engine_reports(a, b), "\n".join(diff_engine_reports(a, b))
    _check_against_reference(sc, arrivals)
    resent = len(arrivals) - len(sc.events)
    extra = {k: b.events_total.get(k, 0) - a.events_total.get(k, 0) for k in b.events_total}
    assert extra.get("accepted", 0) == 0
    assert sum(extra.values()) == resent
    assert set(k for k, v in extra.items() if v) <= {"duplicate", "late", "unmapped"}


@ENGINE
@given(sc=scenarios(allow_unknown=False), data=st.data())
def test_d_late_events_are_counted_and_change_nothing(sc: Scenario, data: st.DataObject) -> None:
    engine = build_engine(sc.catalog, LATENESS)
    apply_all(engine, sc.events)
    before = engine.report(sc.now)
    cat = RefCatalog.from_dict(sc.catalog)
    _, applied = classify(cat, sc.events, LATENESS)
    mapped = cat.mapped_components()
    newest: dict[str, float] = {}
    for e in applied:
        newest[e.component] = max(newest.get(e.component, e.ts), e.ts)
    late = [
        Ev(c, data.draw(st.sampled_from(("up", "down", "maintenance"))), t - LATENESS - back)
        for c, t in sorted(newest.items())
        for back in data.draw(st.lists(st.sampled_from((0.5, 1.0, sc.step, 86400.0)), max_size=2))
    ]
    outcomes = apply_all(engine, late)
    want = ["unmapped" if e.component not in mapped else "late" for e in late]
    assert outcomes == want
    after = engine.report(sc.now)
    assert not diff_engine_reports(before, after), "\n".join(diff_engine_reports(before, after))
    assert after.events_total["late"] == before.events_total.get("late", 0) + want.count("late")


def _round_trip(engine: Any, catalog: dict[str, Any]) -> Any:
    """A fresh engine whose trackers went through bytes (as the changelog stores them)."""
    from agents.worker.state import decode_component, decode_service, encode_component, encode_service
    from streams.component import ComponentTracker
    from streams.service import ServiceTracker

    fresh = build_engine(catalog, LATENESS)
    for comp, tr in engine.components.items():
        fresh.components[comp] = decode_component(encode_component(tr))
        # a value of an older release (the JSON of to_obj) decodes to the same tracker
        legacy = ComponentTracker.from_obj(orjson.loads(orjson.dumps(tr.to_obj())))
        assert legacy.to_obj() == fresh.components[comp].to_obj() == tr.to_obj()
    for name, tr in engine.services.items():
        fresh.services[name] = decode_service(encode_service(tr))
        old = ServiceTracker.from_obj(orjson.loads(orjson.dumps(tr.to_obj())))
        assert old.to_obj() == fresh.services[name].to_obj() == tr.to_obj()
    fresh.counts = engine.counts.copy()
    fresh.unmapped = engine.unmapped
    return fresh


@ENGINE
@given(sc=scenarios(allow_unknown=False), data=st.data())
def test_e_serialized_trackers_resume_identically(sc: Scenario, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(sc.events)), label="cut")
    engine = build_engine(sc.catalog, LATENESS)
    apply_all(engine, sc.events[:cut])
    restored = _round_trip(engine, sc.catalog)
    assert not diff_engine_reports(engine.report(sc.now), restored.report(sc.now))
    a = apply_all(engine, sc.events[cut:])
    b = apply_all(restored, sc.events[cut:])
    assert a == b
    problems = diff_engine_reports(engine.report(sc.now), restored.report(sc.now))
    assert not problems, "\n".join(problems)
    _check_against_reference(sc, sc.events)


@ENGINE
@given(sc=scenarios(allow_unknown=False))
def test_counters_never_decrease_in_time_order(sc: Scenario) -> None:
    """outages_total and downtime_seconds_total are counters: with events arriving in
    time order they never decrease. (Out of order, a late event that merges two outages
    steps them back to the exact value: the contract's "same results as sorted arrival"
    wins over monotonicity; see DESIGN.md.)"""
    _assert_counters_grow_in_time_order(sc, lambda ev: sc.now)


def _pruned_mid_stream(sc: Scenario, data: st.DataObject) -> Any:
    """An engine fed ``sc``'s events one at a time, pruned at drawn moments between them
    (at an event's ts, at now, or 40 days after the event, never after now), then at now."""
    engine = build_engine(sc.catalog, LATENESS)
    for e in sc.events:
        if data.draw(st.booleans(), label="prune?"):
            when = data.draw(st.sampled_from((e.ts, sc.now, e.ts + 40 * 86400.0)), label="when")
            engine.prune(min(when, sc.now))
        apply_all(engine, [e])
    engine.prune(sc.now)
    return engine


@ENGINE
@given(sc=scenarios(allow_unknown=False), data=st.data())
def test_f_pruning_mid_stream_changes_nothing(sc: Scenario, data: st.DataObject) -> None:
    """prune(t) for any t <= now, interleaved with the stream, leaves the report at now
    identical (every window reads at most 31 days back; gauges and counters alike)."""
    engine = _pruned_mid_stream(sc, data)
    report = engine.report(sc.now)
    ref = reference_report(RefCatalog.from_dict(sc.catalog), sc.events, sc.now, LATENESS)
    problems = diff_reports(ref, report)
    assert not problems, "\n".join([*problems, _explain(sc, sc.events)])


@settings(ENGINE, max_examples=max(10, ENGINE.max_examples // 5))
@given(sc=long_streams())
def test_g_long_streams_match_reference(sc: Scenario) -> None:
    """Long histories: trackers compact what is past the allowed lateness."""
    _check_against_reference(sc, sc.events)


def _assert_counters_grow_in_time_order(sc: Scenario, report_at: Callable[[Ev], float]) -> None:
    """Apply ``sc``'s events in time order, one at a time, reporting at ``report_at(ev)``
    after each: outages_total and downtime_seconds_total never decrease."""
    engine = build_engine(sc.catalog, LATENESS)
    last: dict[str, tuple[int, float]] = {}
    # At equal ts the most severe state wins, so it comes first: a "down" after an "up"
    # at the same instant would turn an ended outage back into a running one, which the
    # engine rightly reports (the ended downtime steps back), but which is not time order.
    severity = {"up": 0, "maintenance": 1, "down": 2}
    for e in sorted(sc.events, key=lambda ev: (ev.ts, -severity[ev.state])):
        apply_all(engine, [e])
        rep = engine.report(report_at(e))
        for name, s in rep.services.items():
            before = last.get(name, (0, 0.0))
            assert s.outages_total >= before[0], (name, e, before, s.outages_total)
            assert s.downtime_seconds_total >= before[1] - 1e-6, (name, e, before)
            last[name] = (s.outages_total, s.downtime_seconds_total)


def _assert_outages_match(sc: Scenario) -> None:
    """The engine's outage list of every service equals the reference's."""
    engine = build_engine(sc.catalog, LATENESS)
    apply_all(engine, sc.events)
    cat = RefCatalog.from_dict(sc.catalog)
    steps = StepFunctions(classify(cat, sc.events, LATENESS)[1])
    for name in sc.catalog["services"]:
        want = [
            (o.start, o.end, o.seconds, o.planned, o.components if not o.planned else ())
            for o in ref_outages(cat, steps, name, sc.now)
        ]
        got = [
            (o.start, o.end, o.seconds, o.planned, o.components if not o.planned else ())
            for o in engine.outages(name, sc.now)
        ]
        assert got == want, f"outages of {name}\n{_explain(sc, sc.events)}"


@ENGINE
@given(sc=scenarios())
def test_h_outage_list_matches_reference(sc: Scenario) -> None:
    """GET /api/services/{name}/outages: runs of down (unplanned) or maintenance
    (planned) overlapping the SLA period, with the components blamed."""
    _assert_outages_match(sc)


@ENGINE
@given(sc=scenarios(allow_unknown=False), data=st.data())
def test_i_segments_interleaved_and_replayed_give_the_same_service(
    sc: Scenario, data: st.DataObject
) -> None:
    """The pipeline's stage 2: a service's segments come from many component partitions
    (each component's segments in order, components interleaved arbitrarily) through
    the repartition topic, and a crash replays a suffix of what was consumed. A
    ServiceTracker fed that way ends where the in-process engine does."""
    from streams.component import Segment
    from streams.report import service_report
    from streams.service import ServiceTracker

    engine = build_engine(sc.catalog, LATENESS)
    sent: dict[str, list[Segment]] = {}
    forward = engine.forward

    def record(segment: Segment, services: tuple[str, ...]) -> None:
        for name in services:
            sent.setdefault(name, []).append(segment)
        forward(segment, services)

    engine.forward = record
    apply_all(engine, sc.events)
    want = engine.report(sc.now)
    catalog = engine.catalog
    for name, segments in sent.items():
        queues: dict[str, list[Segment]] = {}
        for seg in segments:  # over the wire and back
            seg = Segment.from_obj(orjson.loads(orjson.dumps(seg.to_obj())))
            queues.setdefault(seg.component, []).append(seg)
        order: list[Segment] = []
        while any(queues.values()):
            comp = data.draw(st.sampled_from(sorted(c for c, q in queues.items() if q)))
            order.append(queues[comp].pop(0))
        tracker = ServiceTracker(name)
        model = catalog.models[name]
        done = 0
        while done < len(order):
            upto = data.draw(st.integers(done + 1, len(order)), label="consume")
            for seg in order[done:upto]:
                tracker.apply(seg, model)
            done = data.draw(st.integers(done, upto), label="committed")
        got = service_report(catalog.services[name], tracker, catalog, sc.now)
        ref = want.services[name]
        problems = [
            f"{f}: engine {getattr(ref, f)!r} != replayed {getattr(got, f)!r}"
            for f in ("state", "availability_ratio", "sla_availability_ratio", "sla_down_seconds",
                      "downtime_by_component_seconds", "outage_seconds")
            if getattr(ref, f) != pytest.approx(getattr(got, f))
        ]
        assert not problems, "\n".join([name, *problems, _explain(sc, sc.events)])


# --------------------------------------------------------------------------- CONTRACT §6
# The same properties with generated service times and maintenance windows: zones with
# DST (and nights when the clocks change), ranges across midnight and to 24:00,
# holidays, weekly and one-off windows overlapping outages and each other.

CALENDARS = settings(ENGINE, max_examples=max(10, ENGINE.max_examples * 2 // 3))


@CALENDARS
@given(sc=scenarios(with_calendars=True))
def test_calendars_any_arrival_order_matches_reference(sc: Scenario) -> None:
    _check_against_reference(sc, sc.events)


@CALENDARS
@given(sc=scenarios(allow_unknown=False, with_calendars=True), data=st.data())
def test_calendars_pruning_and_restoring_change_nothing(sc: Scenario, data: st.DataObject) -> None:
    """Pruned mid-stream (counters carry the accounted outages) and round-tripped
    through bytes, the report at now still equals the reference."""
    engine = _pruned_mid_stream(sc, data)
    restored = _round_trip(engine, sc.catalog)
    ref = reference_report(RefCatalog.from_dict(sc.catalog), sc.events, sc.now, LATENESS)
    for rep in (engine.report(sc.now), restored.report(sc.now)):
        problems = diff_reports(ref, rep)
        assert not problems, "\n".join([*problems, _explain(sc, sc.events)])


@CALENDARS
@given(sc=scenarios(with_calendars=True))
def test_calendars_outage_list_matches_reference(sc: Scenario) -> None:
    """Outages are runs inside service time; windows make planned ones."""
    _assert_outages_match(sc)


@CALENDARS
@given(sc=scenarios(allow_unknown=False, with_calendars=True), data=st.data())
def test_calendars_reordering_within_lateness_changes_nothing(sc: Scenario,
                                                             data: st.DataObject) -> None:
    ordered = sorted(sc.events, key=lambda e: (e.ts, RANK[e.state]))
    jitter = data.draw(
        st.lists(st.floats(0.0, 1.0), min_size=len(ordered), max_size=len(ordered)),
        label="jitter",
    )
    a = _check_against_reference(sc, ordered)
    b = _check_against_reference(sc, jittered_order(ordered, jitter, LATENESS))
    problems = diff_engine_reports(a, b)
    assert not problems, "\n".join(problems)


@settings(ENGINE, max_examples=max(5, ENGINE.max_examples // 10))
@given(sc=long_streams(with_calendars=True))
def test_calendars_long_streams_match_reference(sc: Scenario) -> None:
    """Long histories that the trackers compact, with calendars."""
    _check_against_reference(sc, sc.events)


@CALENDARS
@given(sc=scenarios(allow_unknown=False, with_calendars=True))
def test_calendars_counters_never_decrease_in_time_order(sc: Scenario) -> None:
    """With service time and windows, outages_total and downtime_seconds_total still
    only grow while events arrive in time order and each is reported at its own time,
    as a live worker sees them. (A fixed ``now`` later than the events would not do:
    a calendar boundary between an event and ``now`` ends an outage without an event,
    and an event from before that boundary, even in time order, arrives after it.)"""
    _assert_counters_grow_in_time_order(sc, lambda ev: ev.ts)

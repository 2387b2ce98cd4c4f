"""Period reports (CONTRACT §7) from day rollups, against the brute-force reference.

The engine is fed generated histories around a month in batches; after each batch the
rollup book recomputes the dirty days and the service history is pruned as the worker
prunes it (the book holds the cut back to the day before what it covered). The report
of the month, built from the stored rollups alone, must equal the reference's brute
force over the whole month from every event.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.periods import DayRollup
from streams.rollups import Stored, decode, encode
from tests import reference as ref
from tests.strategies import (
    ENGINE_SETTINGS,
    build_engine,
    calendars,
    catalogs,
    jittered_order,
    to_event,
)

#: The month under test and the report's `now` choices: during it, and after it.
PERIOD = "2024-03"
START = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
END = datetime(2024, 4, 1, tzinfo=UTC).timestamp()
RETENTION = 32 * 86400.0


class DictStore:
    """A ``streams.rollups.RollupStore`` in memory, stored as bytes as the worker's table
    does: what survives is what is read."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> Stored | None:
        raw = self.data.get(key)
        return None if raw is None else decode(raw)

    def put(self, service: str, key: str, value: Stored) -> None:
        self.data[key] = encode(value)


class KeepingStore(DictStore):
    """A ``DictStore`` that keeps the objects it was given next to their bytes, as the
    worker's table keeps them decoded: a day rollup keeps its in-memory marks, so the
    next recomputation of its day resumes from one."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[str, Stored] = {}

    def get(self, key: str) -> Stored | None:
        return self.kept.get(key)

    def put(self, service: str, key: str, value: Stored) -> None:
        super().put(service, key, value)
        assert decode(self.data[key]) == value  # what survives a restart is the same
        self.kept[key] = value


def make_book(engine: Any, store: Any = None) -> Any:
    from streams.periods import service_accounting, service_info
    from streams.rollups import RollupBook

    return RollupBook(store if store is not None else DictStore(),
                      lambda name: service_accounting(engine.catalog, name),
                      lambda name: service_info(engine.catalog, name))


@contextlib.contextmanager
def marks_every(n: int) -> Iterator[None]:
    """Day rollups marked every ``n`` points of their view (and thinned as usual): the
    few events a generated history has still resume from marks."""
    from streams import periods

    old = periods.MARK_EVERY
    periods.MARK_EVERY = n
    try:
        yield
    finally:
        periods.MARK_EVERY = old


def feed(engine: Any, book: Any, arrivals: list[ref.Ev], cuts: list[int], now: float) -> None:
    """Apply ``arrivals`` in batches split at ``cuts``, checkpointing after each batch as
    the worker does: dirty days recomputed, then the history pruned."""
    bounds = sorted({0, len(arrivals), *(c for c in cuts if 0 < c < len(arrivals))})
    for lo, hi in itertools.pairwise(bounds):
        batch = arrivals[lo:hi]
        for e in batch:
            engine.apply(to_event(e))
        first = min(e.ts for e in batch)
        for name in engine.services:
            book.mark(name, first)
        checkpoint(engine, book, now)


def checkpoint(engine: Any, book: Any, now: float) -> None:
    for name, tracker in engine.services.items():
        book.update(name, tracker, tracker.frontier, now)
        tracker.prune(book.prune_cut(name, now - RETENTION, tracker))


def compare(got: Any, want: ref.RefPeriodReport) -> list[str]:
    problems = []

    def close(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)

    j = got.to_json()
    for field, value in (("up_seconds", want.up), ("down_seconds", want.down),
                         ("planned_seconds", want.planned), ("availability", want.availability),
                         ("longest_outage_seconds", want.longest_outage_seconds),
                         ("supported_availability", want.supported_availability)):
        if not close(j[field], value):
            problems.append(f"{field}: got {j[field]}, want {value}")
    for field, value in (("met", want.met), ("kpi_gap", want.kpi_gap),
                         ("restore_breaches", want.restore_breaches), ("outages", len(want.outages))):
        if j[field] != value:
            problems.append(f"{field}: got {j[field]}, want {value}")
    got_outages = [(o["start"], o["end"], o["seconds_in_period"], tuple(o["components"]))
                   for o in j["outage_list"]]
    if len(got_outages) == len(want.outages):
        for g, w in zip(got_outages, want.outages, strict=True):
            if g[0] != w[0] or g[1] != w[1] or not close(g[2], w[2]) or g[3] != w[3]:
                problems.append(f"outage: got {g}, want {w}")
    else:
        problems.append(f"outage list: got {got_outages}, want {want.outages}")
    gb, wb = j["downtime_by_component"], want.downtime_by_component
    if set(gb) != set(wb) or any(not close(gb[c], wb[c]) for c in wb):
        problems.append(f"downtime_by_component: got {gb}, want {wb}")
    days = j["days"]
    if sum(d["down_seconds"] for d in days) and not close(sum(d["down_seconds"] for d in days),
                                                          want.down):
        problems.append("days do not add up to the month")
    return problems


STEPS = (600.0, 3600.0, 5 * 3600.0, 86400.0)


@st.composite
def histories(draw: st.DrawFn, with_calendars: bool = False
              ) -> tuple[dict[str, Any], list[ref.Ev], float]:
    cat = draw(catalogs())
    comps = list(cat["components"])
    step = draw(st.sampled_from(STEPS))
    if with_calendars:
        draw(calendars(cat, END - 86400.0 * draw(st.integers(0, 31)), 3600.0))
    span = int((END - START) / step)
    margin = max(2, int(3 * 86400 / step))
    ev = st.builds(
        ref.Ev,
        component=st.sampled_from(comps),
        state=st.sampled_from((ref.UP, ref.DOWN, ref.MAINTENANCE, ref.DOWN)),
        ts=st.integers(-margin, span + margin).map(lambda k: START + k * step),
    )
    events = draw(st.lists(ev, max_size=30))
    now = draw(st.sampled_from((END + 10 * 86400.0, END + 3600.0, START + 15.5 * 86400.0)))
    return cat, [e for e in events if e.ts <= now], now


@ENGINE_SETTINGS
@given(histories(), st.data())
def test_month_report_from_rollups_matches_brute_force(h: Any, data: st.DataObject) -> None:
    check_against_reference(h, data)


@ENGINE_SETTINGS
@given(histories(with_calendars=True), st.data())
def test_month_report_with_calendars_matches_brute_force(h: Any, data: st.DataObject) -> None:
    """Service times in zones with DST (the month and its days in that zone),
    maintenance windows weekly and one-off (CONTRACT §6)."""
    check_against_reference(h, data)


@st.composite
def dense_histories(draw: st.DrawFn, with_calendars: bool = False
                    ) -> tuple[dict[str, Any], list[ref.Ev], float]:
    """Many events in a day or two (a storm): days with many points, recomputed from
    inside at many checkpoints."""
    cat = draw(catalogs())
    if with_calendars:
        draw(calendars(cat, START + 9 * 86400.0, 3600.0))
    step = draw(st.sampled_from((60.0, 300.0, 900.0)))
    first = START + 10 * 86400.0 - draw(st.sampled_from((0.0, 3 * 3600.0)))
    ev = st.builds(
        ref.Ev,
        component=st.sampled_from(list(cat["components"])),
        state=st.sampled_from((ref.UP, ref.DOWN, ref.MAINTENANCE, ref.DOWN)),
        ts=st.integers(0, int(1.5 * 86400 / step)).map(lambda k: first + k * step),
    )
    events = draw(st.lists(ev, min_size=5, max_size=80))
    return cat, events, draw(st.sampled_from((END + 3600.0, first + 86400.0)))


@pytest.mark.usefixtures("engine_path")  # the day loop in C and in Python
@ENGINE_SETTINGS
@given(dense_histories(), st.data())
def test_month_report_resumed_from_marks_matches_brute_force(h: Any, data: st.DataObject
                                                             ) -> None:
    """Rollups kept in memory between checkpoints, as the worker keeps them, recompute
    a day from the last mark before what changed: the reports are the reference's."""
    cat, _, now = h
    with marks_every(data.draw(st.sampled_from((1, 2, 3)))):
        assert_reports_match(cat, *out_of_order(h, data), now, KeepingStore())


@pytest.mark.usefixtures("engine_path")  # the day loop in C and in Python
@ENGINE_SETTINGS
@given(dense_histories(with_calendars=True), st.data())
def test_month_report_with_calendars_resumed_from_marks_matches_brute_force(
        h: Any, data: st.DataObject) -> None:
    cat, _, now = h
    with marks_every(data.draw(st.sampled_from((1, 2, 3)))):
        assert_reports_match(cat, *out_of_order(h, data), now, KeepingStore())


@pytest.mark.parametrize("closes", ["service day", "event"])
def test_an_outage_that_ends_exactly_at_now_has_ended(closes: str) -> None:
    """A down run that reaches the report's ``now`` is still going on only if the
    service is down at ``now`` itself: not when the service day closes at ``now``
    (CONTRACT §6) or an event brings it back at ``now`` (found by the marks property)."""
    sunday_0115 = datetime(2024, 3, 31, 1, 15, tzinfo=UTC).timestamp()
    monday_0100 = datetime(2024, 4, 1, 1, 0, tzinfo=UTC).timestamp()
    cat = {"components": {"c0": {"team": "t"}},
           "services": {"s": {"kind": "internal", "customers": ["x"],
                              "sla": {"target": 0.5, "period": "5m", "service_time": "st"},
                              "restore_time": "30m", "requires": ["c0"]}},
           "service_times": {"st": {"timezone": "UTC", "weekly": ["Sat,Sun 01:15-01:00"]}}}
    arrivals = [ref.Ev("c0", "up", sunday_0115 - 86400.0), ref.Ev("c0", "down", sunday_0115)]
    now = monday_0100 if closes == "service day" else monday_0100 - 3600.0
    if closes == "event":
        arrivals.append(ref.Ev("c0", "up", now))
    assert_reports_match(cat, arrivals, list(range(len(arrivals))), now)


def out_of_order(h: Any, data: st.DataObject) -> tuple[list[ref.Ev], list[int]]:
    """Arrivals and batch cuts that recompute days from inside: events jittered within
    the allowed lateness, or some components' events hours to days ahead of the others
    (input partitions apart in event time), in many batches."""
    cat, events, now = h
    if data.draw(st.booleans()):
        jitter = data.draw(st.lists(st.floats(0, 1), min_size=len(events),
                                    max_size=len(events)))
        arrivals = jittered_order(events, jitter, 600.0)
    else:
        ahead = set(data.draw(st.lists(st.sampled_from(sorted(cat["components"])),
                                       unique=True)))
        skew = data.draw(st.sampled_from((3600.0, 5 * 3600.0, 86400.0)))
        arrivals = sorted(events, key=lambda e: e.ts - (skew if e.component in ahead else 0.0))
    every = data.draw(st.integers(1, 6))
    return [e for e in arrivals if e.ts <= now], list(range(0, len(arrivals), every))


@ENGINE_SETTINGS
@given(dense_histories(with_calendars=True), st.data())
def test_rollups_resumed_from_marks_equal_rollups_recomputed_from_midnight(
        h: Any, data: st.DataObject) -> None:
    """Every stored day rollup of a book whose days resume from marks (at every point)
    is the one a book that recomputes every dirty day from midnight stores."""
    cat, _, now = h
    arrivals, cuts = out_of_order(h, data)
    whole_engine, marked_engine = build_engine(cat), build_engine(cat)
    whole, marked = DictStore(), KeepingStore()
    feed(whole_engine, make_book(whole_engine, whole), arrivals, cuts, now)
    with marks_every(1):
        feed(marked_engine, make_book(marked_engine, marked), arrivals, cuts, now)
    assert set(whole.data) == set(marked.data)
    for key, raw in whole.data.items():
        want, got = decode(raw), decode(marked.data[key])
        if not isinstance(want, DayRollup):
            assert got == want, key
            continue
        assert isinstance(got, DayRollup)
        close = [math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9)
                 for x, y in ((got.up, want.up), (got.down, want.down),
                              (got.planned, want.planned))]
        assert all(close), (key, got, want)
        assert (got.day, got.start, got.end, got.covered, got.tail) == \
            (want.day, want.start, want.end, want.covered, want.tail), key
        assert list(got.runs) == list(want.runs) and got.runs.tags == want.runs.tags, key
        assert got.blame.keys() == want.blame.keys(), key
        assert all(math.isclose(got.blame[c], want.blame[c], rel_tol=1e-12, abs_tol=1e-9)
                   for c in want.blame), key


def check_against_reference(h: Any, data: st.DataObject, store: Any = None) -> None:
    cat, events, now = h
    jitter = data.draw(st.lists(st.floats(0, 1), min_size=len(events), max_size=len(events)))
    arrivals = jittered_order(events, jitter, 600.0)
    cuts = data.draw(st.lists(st.integers(0, max(0, len(arrivals))), max_size=6))
    assert_reports_match(cat, arrivals, cuts, now, store)


def assert_reports_match(cat: dict[str, Any], arrivals: list[ref.Ev], cuts: list[int],
                         now: float, store: Any = None) -> None:
    """Each service's ``PERIOD`` report at ``now``, from ``arrivals`` applied and
    checkpointed in batches split at ``cuts``, equals the brute-force reference's."""
    engine = build_engine(cat)
    book = make_book(engine, store)
    feed(engine, book, arrivals, cuts, now)
    rcat = ref.RefCatalog.from_dict(cat)
    _, applied = ref.classify(rcat, arrivals, 600.0)
    steps = ref.StepFunctions(applied)
    for name in rcat.services:
        problems = compare(book.report(name, PERIOD, now),
                           ref.period_report(rcat, steps, name, PERIOD, now))
        assert not problems, f"{name} {PERIOD} at {now}: " + "; ".join(problems) + \
            f"\narrivals={arrivals}\ncuts={cuts}"


@ENGINE_SETTINGS
@given(histories(), st.data())
def test_input_partitions_days_apart_match_brute_force(h: Any, data: st.DataObject) -> None:
    """A backfill read from two input partitions that run apart in event time (up to
    five days): each component's events in order, the services' segments days out of
    order. Pruning must keep what the late partition's days still need."""
    cat, events, _ = h
    now = END + 40 * 86400.0  # long after: only the rollups' hold-back limits pruning
    comps = sorted(cat["components"])
    ahead = set(data.draw(st.lists(st.sampled_from(comps), unique=True)))
    skew = data.draw(st.sampled_from((0.0, 3600.0, 86400.0, 2.5 * 86400.0, 5 * 86400.0)))
    arrivals = sorted(events, key=lambda e: e.ts - (skew if e.component in ahead else 0.0))
    cuts = data.draw(st.lists(st.integers(0, max(0, len(arrivals))), max_size=8))
    assert_reports_match(cat, arrivals, cuts, now)


@ENGINE_SETTINGS
@given(histories(), st.data())
def test_backfill_in_one_batch_builds_the_same_reports(h: Any, data: st.DataObject) -> None:
    """Sorted history in one go (a backfill into a fresh app id) and in many batches
    (live processing) give the same numbers for every month."""
    cat, events, now = h
    arrivals = sorted(events, key=lambda e: e.ts)
    cuts = data.draw(st.lists(st.integers(0, max(0, len(arrivals))), max_size=8))
    live, backfill = build_engine(cat), build_engine(cat)
    live_book, backfill_book = make_book(live), make_book(backfill)
    feed(live, live_book, arrivals, cuts, now)
    feed(backfill, backfill_book, arrivals, [], now)
    for name in cat["services"]:
        for period in ("2024-02", PERIOD, "2024-04"):
            a = live_book.report(name, period, now)
            b = backfill_book.report(name, period, now)
            ja, jb = a.to_json(), b.to_json()
            for k in ("revision", "revised_at"):
                ja.pop(k), jb.pop(k)
            assert _rounded(ja) == _rounded(jb), (name, period)


def _rounded(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 6)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def test_a_late_event_after_the_month_closed_is_a_revision() -> None:
    cat = {"components": {"a": {"kpi": 0.99}, "b": {}},
           "services": {"s": {"kind": "external", "customers": ["x"],
                              "sla": {"target": 0.999, "period": "month"}, "restore_time": "1h",
                              "requires": ["a", "b"]}}}
    engine = build_engine(cat)
    book = make_book(engine)
    events = [ref.Ev("a", ref.DOWN, END - 7200), ref.Ev("a", ref.UP, END - 3600)]
    feed(engine, book, events, [], END - 3000)
    feed(engine, book, [ref.Ev("b", ref.UP, END + 60)], [], END + 120)
    before = book.report("s", PERIOD, END + 120).to_json()
    assert before["revision"] == 0 and before["down_seconds"] == 3600
    # b was down for ten minutes before the month ended: it says so at END + 5 min.
    feed(engine, book, [ref.Ev("b", ref.DOWN, END - 300)], [], END + 300)
    after = book.report("s", PERIOD, END + 400).to_json()
    assert after["down_seconds"] == 3600 + 300
    assert after["revision"] == 1 and after["revised_at"] == END + 300
    # b came back at END + 60: the outage is followed past the month's end.
    assert after["outages"] == 2 and after["outage_list"][1]["end"] == END + 60
    assert after["outage_list"][1]["seconds_in_period"] == 300
    assert after["outage_list"][1]["seconds"] == 360


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_days_and_months_follow_the_zone(zone: str) -> None:
    from streams.periods import day_bounds, month_bounds, month_days

    days = month_days("2026-10", zone)
    assert len(days) == 31
    start, end = month_bounds("2026-10", zone)
    assert sum(day_bounds(d, zone)[1] - day_bounds(d, zone)[0] for d in days) == end - start
    lengths = {day_bounds(d, zone)[1] - day_bounds(d, zone)[0] for d in days}
    assert lengths == ({86400.0} if zone != "Europe/Berlin" else {86400.0, 90000.0})


def test_a_partition_five_days_behind_still_lands_in_its_days() -> None:
    """Component b's input partition is five days of event time behind a's (a backfill):
    its outage on the 10th arrives when a is at the 15th, after the service's history
    was pruned as far as the rollups allow. It must still count, in its day."""
    cat = {"components": {"a": {}, "b": {}},
           "services": {"s": {"kind": "external", "customers": ["x"],
                              "sla": {"target": 0.999, "period": "month"}, "restore_time": "1h",
                              "requires": ["a", "b"]}}}
    day = 86400.0
    a_events = [ref.Ev("a", st, START + k * day + off) for k in range(31)
                for st, off in ((ref.DOWN, 3600.0), (ref.UP, 3660.0))]
    b_events = [ref.Ev("b", ref.DOWN, START), ref.Ev("b", ref.UP, START + 600.0),
                ref.Ev("b", ref.DOWN, START + 9.5 * day), ref.Ev("b", ref.UP, START + 9.5 * day + 7200)]
    arrivals = sorted(a_events + b_events,
                      key=lambda e: e.ts - (5 * day if e.component == "a" else 0.0))
    now = END + 40 * day
    engine = build_engine(cat)
    book = make_book(engine)
    feed(engine, book, arrivals, list(range(0, len(arrivals), 3)), now)
    rcat = ref.RefCatalog.from_dict(cat)
    _, applied = ref.classify(rcat, arrivals, 600.0)
    want = ref.period_report(rcat, ref.StepFunctions(applied), "s", PERIOD, now)
    got = book.report("s", PERIOD, now)
    assert not compare(got, want), compare(got, want)
    assert book.dropped == 0
    assert engine.services["s"].whole_from > -math.inf  # it was pruned meanwhile


def test_day_rollup_runs_stored_as_columns_and_read_from_an_older_release() -> None:
    """A day's runs are stored as their columns' bytes in a checkpoint record; values of
    older releases (the columns in base64 in JSON, or runs as a list of [a, b, blamed])
    still read to the same rollup."""
    import orjson

    from streams import record
    from streams.periods import DayRollup, Runs
    from streams.rollups import decode, encode

    runs = Runs([(10.0, 20.5, ("a", "b")), (30.0, 31.0, ()), (40.0, 50.0, ("a", "b"))])
    day = DayRollup("2024-03-01", 0.0, 86400.0, 60.0, 1.0, 2.0, 3.0, runs, {"a": 1.5})
    raw = encode(day)
    assert record.is_record(raw) and decode(raw) == day
    back = decode(raw)
    assert isinstance(back, DayRollup) and list(back.runs) == list(runs)
    assert [x.hex() for x in back.runs.ab] == [x.hex() for x in runs.ab]
    assert len(back.runs.tags) == 2  # ("a", "b") once, after NO_TAG
    in_base64 = orjson.dumps(day.to_obj())  # the previous release's value
    assert decode(in_base64) == day
    many = DayRollup("2024-03-01", 0.0, 86400.0, 60.0, 1.0, 2.0, 3.0,
                     Runs((10.0 * k, 10.0 * k + 5.0, ("a",)) for k in range(200)))
    assert len(encode(many)) < 0.8 * len(orjson.dumps(many.to_obj()))
    old = orjson.loads(in_base64)
    del old["rc"]
    old["r"] = [[r[0], r[1], list(r[2])] for r in runs]
    assert decode(orjson.dumps(old)) == day
    broken = orjson.loads(in_base64)
    broken["rc"]["ix"] = broken["rc"]["ix"][:4]
    with pytest.raises(ValueError, match="2024-03-01"):
        decode(orjson.dumps(broken))
    with pytest.raises(ValueError, match="day rollup"):
        decode(raw[:-6])  # a record cut short
    plain = DayRollup("2024-03-02", 0.0, 86400.0, 60.0, 60.0, 0.0, 0.0)
    assert decode(encode(plain)) == plain  # no runs: JSON, as before

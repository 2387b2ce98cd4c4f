"""A crash between a checkpoint and the delivery of stage 1's forwards loses nothing.

Stage 1 writes its component trackers at a checkpoint, but the segments it forwarded
for the batches before it may still sit in the producer when the process dies. On the
restart the trackers come back from that checkpoint, Kafka redelivers everything after
the last commit, and the redelivered events find their own effect already in the
trackers: duplicates, or late behind the events that followed them. The pipeline marks
them as redelivered (their offsets were counted before), and ``apply_columns`` forwards
the trackers' truth at each of them, whatever the outcome.

The property: for any stream, any point ``j`` up to which forwards were delivered, any
checkpoint ``k >= j`` and any crash point ``m >= k``, the service numbers after the
redelivery equal those of an uninterrupted run.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.batch import Columns, WireSegment, apply_columns
from streams.component import ComponentTracker
from streams.service import ServiceTracker, in_time_order
from streams.states import BY_NAME
from tests.reference import Ev
from tests.strategies import (
    ENGINE_SETTINGS,
    Scenario,
    apply_all,
    build_engine,
    diff_engine_reports,
    long_streams,
    scenarios,
)

CRASH = ENGINE_SETTINGS
LATENESS = 600.0


def _cols(events: list[Ev]) -> Columns:
    return ([e.component for e in events], [int(BY_NAME[e.state]) for e in events],
            [float(e.ts) for e in events])


def _checkpoint(trackers: dict[str, ComponentTracker]) -> dict[str, ComponentTracker]:
    """What a restart reads back: the trackers through their stored form."""
    return {c: ComponentTracker.from_obj(orjson.loads(orjson.dumps(t.to_obj())))
            for c, t in trackers.items()}


def _crash_and_redeliver(sc: Scenario, data: st.DataObject, *, repair: bool) -> list[str]:
    ref = build_engine(sc.catalog, LATENESS)
    index = ref.catalog.reverse_index
    # Only components some service reads: unmapped ones take a path of their own.
    events = [e for e in sc.events if index.get(e.component)]
    apply_all(ref, events)
    n = len(events)
    j = data.draw(st.integers(0, n), label="forwards delivered up to")
    k = data.draw(st.integers(j, n), label="checkpoint at")
    m = data.draw(st.integers(k, n), label="crash at")

    delivered: dict[str, list[WireSegment]] = {}
    lost: dict[str, list[WireSegment]] = {}
    live: dict[str, ComponentTracker] = {}
    apply_columns(live, _cols(events[:j]), index, LATENESS, delivered, resend_duplicates=True)
    apply_columns(live, _cols(events[j:k]), index, LATENESS, lost, resend_duplicates=True)
    restored = _checkpoint(live)
    apply_columns(live, _cols(events[k:m]), index, LATENESS, lost, resend_duplicates=True)
    # The crash: ``live`` is gone. Kafka redelivers from the last commit (at most j:
    # a commit waits for the forwards); the counters checkpointed with the trackers
    # mark j..k as applied before.
    again: dict[str, list[WireSegment]] = {}
    marks = [True] * (k - j) + [False] * (n - k)
    apply_columns(restored, _cols(events[j:]), index, LATENESS, again, resend_duplicates=True,
                  redelivered=marks if repair else None)

    got = build_engine(sc.catalog, LATENESS)
    got.components.update(restored)
    models = got.catalog.models
    for fetch in (delivered, again):
        for name, segs in fetch.items():
            tracker = got.services.setdefault(name, ServiceTracker(name))
            tracker.apply_many(in_time_order(segs), models[name])
    for name in ref.services:
        got.services.setdefault(name, ServiceTracker(name))
    return diff_engine_reports(ref.report(sc.now), got.report(sc.now))


@CRASH
@given(sc=scenarios(allow_unknown=False, max_events=40), data=st.data())
def test_redelivery_after_a_crash_gives_the_uninterrupted_numbers(
    sc: Scenario, data: st.DataObject
) -> None:
    assert _crash_and_redeliver(sc, data, repair=True) == []


@settings(CRASH, max_examples=max(10, (CRASH.max_examples or 100) // 3))
@given(sc=long_streams(), data=st.data())
def test_redelivery_after_a_crash_on_long_streams(sc: Scenario, data: st.DataObject) -> None:
    assert _crash_and_redeliver(sc, data, repair=True) == []


def test_without_the_repair_a_late_redelivery_loses_its_forward() -> None:
    """The case the repair exists for: the checkpoint holds an outage whose forward was
    lost, and the events after it put the outage beyond the allowed lateness."""
    catalog = {
        "components": {"db": {"team": "t"}},
        "services": {"s": {"kind": "external", "customers": ["x"], "restore_time": "30m",
                           "sla": {"target": 0.99, "period": "1d"}, "requires": ["db"]}},
    }
    t0 = 1_709_251_200.0
    events = [Ev("db", "down", t0), Ev("db", "up", t0 + 900.0), Ev("db", "up", t0 + 1800.0)]
    sc = Scenario(catalog, events, t0 + 3600.0, 1.0)

    class Fixed:
        """Forwards delivered up to event 0, checkpoint and crash after the last."""

        def draw(self, strategy: Any, label: str = "") -> int:
            return {"forwards delivered up to": 0}.get(label, len(events))

    fixed: Any = Fixed()
    assert _crash_and_redeliver(sc, fixed, repair=False) != []
    assert _crash_and_redeliver(sc, fixed, repair=True) == []

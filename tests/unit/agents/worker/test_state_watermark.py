"""Incremental checkpoints found from ``Timeline._low``: what the store holds after every
checkpoint decodes to the live trackers.

Generated runs of the engine (in-order and late events, several components per service so
tag tables grow, prunes that drop points and renumber tags) are checkpointed through
``TrackerTable.flush`` with a small threshold and a small chunk size (so trackers are
stored as heads and patches from a few points on, and patches are cut in pieces). After
every checkpoint each tracker decoded from the changelog (what a recovery rebuilds) must
equal the live one. Reloads put decoded trackers in the engine's place, written on by
the same table after ``forget`` (a rebalance) or by a new one (a restart), whose first
checkpoint counts from the head the tracker was read from. The C loops and the Python
ones (``engine_path``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust.streams  # noqa: F401  # flush imports it; its first import runs `file`
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.worker import patchlog
from agents.worker.state import (
    TrackerTable,
    decode_component,
    decode_service,
    encode_component,
    encode_service,
)
from streams.catalog import parse_catalog
from streams.component import ComponentTracker
from streams.engine import Engine
from streams.service import ServiceTracker
from tests.fake_tables import Log, Table, flush_to, replay

COMPS = [f"c{i}" for i in range(7)]
SLA = {"target": 0.999, "period": "30d"}
CATALOG = parse_catalog({
    "components": {c: {"team": "t"} for c in COMPS},
    "services": {
        "all": {"kind": "external", "customers": ["x"], "sla": SLA,
                "requires": [{"all": ["c0", "c1", "c2"]}]},
        "k": {"kind": "external", "customers": ["x"], "sla": SLA,
              "requires": [{"at_least": 3, "of": ["c1", "c2", "c3", "c4", "c5", "c6"]}]},
        "one": {"kind": "internal", "customers": ["y"], "sla": SLA, "requires": ["c6"]},
    },
}, "test")


def tables(comp_data: Table, svc_data: Table) -> tuple[TrackerTable[ComponentTracker],
                                                        TrackerTable[ServiceTracker]]:
    comps = TrackerTable(comp_data, decode_component, encode_component,
                         ComponentTracker.to_record, ComponentTracker.from_record)
    svcs = TrackerTable(svc_data, decode_service, encode_service,
                        ServiceTracker.to_record, ServiceTracker.from_record)
    for tt in (comps, svcs):
        tt.incremental_from = 40
        tt.chunk_size = 300
    return comps, svcs


def flush(tt: TrackerTable[Any], log: Log) -> None:
    asyncio.run(flush_to(tt, log))


event = st.tuples(st.sampled_from(COMPS), st.sampled_from(["up", "down", "down", "maintenance"]),
                  st.floats(0.5, 120.0), st.sampled_from([0.0, 0.0, 0.0, 30.0, 400.0]))
step = st.tuples(st.lists(event, min_size=1, max_size=25),
                 st.sampled_from(["checkpoint", "checkpoint", "checkpoint", "prune",
                                  "restart", "rebalance"]))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(step, min_size=1, max_size=30))
def test_the_store_decodes_to_the_live_trackers_after_every_checkpoint(
        engine_path: str, steps: list[Any]) -> None:
    engine = Engine(CATALOG, allowed_lateness=600.0)
    comps, svcs = tables(Table(), Table())
    clog: Log = []
    slog: Log = []
    ts = 1_700_000_000.0
    for batch, then in steps:
        raws = []
        for comp, state, dt, late in batch:
            ts += dt
            raws.append(orjson.dumps({"component": comp, "state": state, "ts": ts - late}))
        engine.apply_raw_many(raws, ts + 1)
        if then == "prune":
            cut = ts - 700.0
            for c in engine.components.values():
                c.prune(cut, 600.0)
            for name, s in engine.services.items():
                s.prune(cut, CATALOG.calendar(name))
        for name, c in engine.components.items():
            comps.put(name, c, 0)
        for name, s in engine.services.items():
            svcs.put(name, s, 0)
        flush(comps, clog)
        flush(svcs, slog)
        back_c, back_s = tables(replay(clog), replay(slog))
        for name, c in engine.components.items():
            got = back_c.get(name)
            assert got is not None and encode_component(got) == encode_component(c), name
        for name, s in engine.services.items():
            got_s = back_s.get(name)
            assert got_s is not None and encode_service(got_s) == encode_service(s), name
        if then == "restart":
            comps, svcs = back_c, back_s
        elif then == "rebalance":
            comps.forget()
            svcs.forget()
            back_c, back_s = comps, svcs
        if then in ("restart", "rebalance"):
            for name in list(engine.components):
                engine.components[name] = back_c.get(name)  # type: ignore[assignment]
            for name in list(engine.services):
                engine.services[name] = back_s.get(name)  # type: ignore[assignment]


def test_the_generated_runs_reach_heads_patches_and_pieces() -> None:
    """The property above is about heads and patches: a run of its size makes them, and
    patches longer than the chunk size in pieces."""
    engine = Engine(CATALOG, allowed_lateness=600.0)
    _, svcs = tables(Table(), Table())
    log: Log = []
    ts = 1_700_000_000.0
    for k in range(40):
        raws = []
        for i in range(20):
            ts += 7.0
            raws.append(orjson.dumps({"component": COMPS[(k * 3 + i) % 7],
                                      "state": ["up", "down"][(k + i) % 2], "ts": ts}))
        engine.apply_raw_many(raws, ts + 1)
        for name, s in engine.services.items():
            svcs.put(name, s, 0)
        flush(svcs, log)
    heads = [patchlog.parse_head(v, "k") for _, v, _ in log
             if v is not None and v.startswith(patchlog.HEAD)]
    assert heads
    assert max(len(h["p"]) - h["b"] for h in heads) >= 2  # patches after a base
    assert max(h["b"] for h in heads) >= 2  # a base cut in pieces
    patches = [v for _, v, _ in log if v is not None and v.startswith(patchlog.PATCH)]
    assert max(map(len, patches)) <= 300 + 200  # the chunk size and a patch's header


def test_a_tag_table_renumbered_by_a_prune_is_written_again() -> None:
    """A prune drops the points of a tag and renumbers the table; as many tags come
    after it as went, so only the watermark (not the table's length) tells that the
    stored table is not a prefix of the new one."""
    tracker = ServiceTracker("k")
    tl = tracker.timeline
    _, svcs = tables(Table(), Table())
    log: Log = []
    t = 0.0
    for tag in [("c1", "c2"), ("c3",), ("c1", "c2"), ("c3",)] * 10:
        t += 10.0
        tl.append_state(t, 2, tag)
        t += 10.0
        tl.append_state(t, 0)
    svcs.put("k", tracker, 0)
    flush(svcs, log)
    assert len(tl.tags) == 3
    tl.prune_before(t - 5.0)  # the last down and up are left: the table is renumbered
    assert tl.tags == [(), ("c3",)]
    for tag in [("c4",), ("c5", "c6")]:
        t += 10.0
        tl.append_state(t, 2, tag)
    assert len(tl.tags) == 4
    svcs.put("k", tracker, 0)
    flush(svcs, log)
    _, back = tables(Table(), replay(log))
    got = back.get("k")
    assert got is not None and got.timeline.tags == tl.tags
    assert encode_service(got) == encode_service(tracker)

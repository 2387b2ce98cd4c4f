"""What a worker holds per component is off the cyclic garbage collector's lists, and is
still freed by reference counting.

A timeline and its three columns, and a component tracker, cannot be part of a reference
cycle, so ``Timeline.__init__`` and ``ComponentTracker.__init__`` take them off the
collector's lists (``_native.untrack``): with several timelines per component, every
collection walked them (at 20,000 components most of the heap). Here: a worker's real
paths (stage 1 and stage 2 in C, through the engine, a checkpoint record read back)
leave none of them tracked, and a timeline dropped is freed at once, without a
collection.
"""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from streams import native, record
from streams.catalog import parse_catalog
from streams.component import ComponentTracker
from streams.engine import Engine
from streams.record import Packer
from streams.timeline import Timeline

NOW = 1_709_251_200.0


@pytest.fixture(autouse=True)
def _needs_native() -> None:
    if native.native is None:
        pytest.fail("the C extension is not built: run `make .venv/.installed`")


def _catalog(n: int) -> Any:
    comps = [f"c{i}" for i in range(n)]
    return parse_catalog({
        "components": {c: {} for c in comps},
        "services": {f"s{i}": {"kind": "external", "sla": {"target": 0.99, "period": "30d"},
                               "requires": [{"any": comps[i:i + 3]}, comps[(i + 5) % n]]}
                     for i in range(n)},
    }, "gc")


def _timelines(engine: Engine) -> Iterator[Timeline]:
    for tracker in engine.components.values():
        yield tracker.history
    for svc in engine.services.values():
        yield svc.timeline
        yield from svc.components.values()


def test_the_engine_holds_no_tracked_timeline_column_or_component_tracker() -> None:
    rng = random.Random(3)
    engine = Engine(_catalog(30))
    raws = [orjson.dumps({"component": f"c{rng.randrange(30)}",
                          "state": rng.choice(("up", "down", "maintenance")),
                          "ts": NOW - 3600 + i + (rng.uniform(-300, 0) if rng.random() < 0.1 else 0)})
            for i in range(2000)]
    for k in range(0, len(raws), 97):
        engine.apply_raw_many(raws[k:k + 97], NOW)
    timelines = list(_timelines(engine))
    assert len(timelines) > 60  # histories, service timelines and the copies
    for tl in timelines:
        assert not any(map(gc.is_tracked, (tl, tl.ts, tl.st, tl.tag)))
    assert not any(map(gc.is_tracked, engine.components.values()))
    # What the collector must still see stays tracked: a service tracker (its dict of
    # copies, and what calendars attach to it).
    assert all(map(gc.is_tracked, engine.services.values()))


def test_a_tracker_read_back_from_its_record_is_not_tracked_either() -> None:
    tracker = ComponentTracker("c1")
    tracker.history = Timeline([NOW - 10, NOW - 5], [2, 0])
    out = Packer()
    raw = out.encode(tracker.to_record(out))
    back = ComponentTracker.from_record(*record.decode(raw, "c1"))
    assert back.history.ts.tolist() == [NOW - 10, NOW - 5]
    assert not any(map(gc.is_tracked, (back, back.history, back.history.ts, back.history.st)))


def test_an_untracked_timeline_is_freed_when_dropped_without_a_collection() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        tl = Timeline()
        tl.ts.extend([1.0, 2.0])
        tl.st.extend([2, 0])
        tl.tag.extend([0, 0])
        refs = [weakref.ref(c) for c in (tl.ts, tl.st, tl.tag)]
        del tl
        assert [r() for r in refs] == [None, None, None]
    finally:
        if was:
            gc.enable()


def test_untrack_leaves_objects_the_collector_never_tracked() -> None:
    fast = native.native
    assert fast is not None
    objs: list[Any] = [1, "text", 2.5, None, (1, 2), b"x"]
    fast.untrack(*objs)  # no error, nothing to do
    lst: list[Any] = []
    lst.append(lst)  # a cycle: only an object of ours may be untracked, never this
    assert gc.is_tracked(lst)


def _tags_held(engine: Engine) -> list[tuple[str, ...]]:
    tags = [t for svc in engine.services.values() for t in svc.timeline.tags if t]
    for model in engine.catalog.models.values():
        tags += model.blame_cache.values()  # the Python path's memo
        if model.plan is not None:  # the C loops' (``_native.plan_memo``)
            tags += native.native.plan_memo(model.plan).values()  # type: ignore[union-attr]
    return tags


@pytest.mark.parametrize("size", [3, 70])
def test_blame_tags_are_not_tracked(size: int) -> None:
    """A storm makes a new blame tag for most down sets, and the tag tables and the
    models' memos keep them: tuples of strings, off the collector's lists whichever path
    made them (the C program's; ``ServiceModel.blame_mask`` for a model of more than 64
    components; a record read back)."""
    rng = random.Random(5)
    n = 80
    comps = [f"c{i}" for i in range(n)]
    engine = Engine(parse_catalog({
        "components": {c: {} for c in comps},
        "services": {f"s{i}": {"kind": "external", "sla": {"target": 0.99, "period": "30d"},
                               "requires": [{"all": [comps[(i + j) % n] for j in range(size)]}]}
                     for i in range(0, n, 10)},
    }, "gc"))
    raws = [orjson.dumps({"component": f"c{rng.randrange(n)}",
                          "state": rng.choice(("up", "down", "down", "maintenance")),
                          "ts": NOW - 3600 + i + (rng.uniform(-300, 0) if rng.random() < 0.1 else 0)})
            for i in range(2000)]
    for k in range(0, len(raws), 97):
        engine.apply_raw_many(raws[k:k + 97], NOW)
    assert all((engine.catalog.models[s].program is None) == (size > 64) for s in engine.services)
    tags = _tags_held(engine)
    assert len(tags) > 100
    assert not any(map(gc.is_tracked, tags))
    for svc in engine.services.values():
        assert not gc.is_tracked(svc.timeline._gx)  # a dict of untracked keys and ints
        out = Packer()
        raw = out.encode(svc.to_record(out))
        back = type(svc).from_record(*record.decode(raw, svc.name))
        assert back.timeline.tags == svc.timeline.tags
        assert not any(map(gc.is_tracked, back.timeline.tags))


@pytest.mark.parametrize("bound", [4096, 40])
def test_the_c_loops_blame_memo_holds_what_blame_mask_gives_and_stays_bounded(
        bound: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The C loops keep the blame tag of each down set in the model's plan (up to the
    memo's bound): every tag kept is the one ``blame_mask`` computes for its set, past
    the table's growth and at its bound, and the engine's outages blame the same."""
    from streams import catalog as catalog_mod

    if native.native is None:
        pytest.skip("no C extension")
    monkeypatch.setattr(catalog_mod, "_BLAME_CACHE_MAX", bound)
    rng = random.Random(7)
    comps = [f"c{i}" for i in range(12)]
    engine = Engine(parse_catalog({
        "components": {c: {} for c in comps},
        "services": {"s": {"kind": "external", "sla": {"target": 0.99, "period": "30d"},
                           "requires": [{"all": comps}]}},
    }, "memo"))
    raws = [orjson.dumps({"component": rng.choice(comps),
                          "state": rng.choice(("up", "down", "down")), "ts": NOW - 3600 + i})
            for i in range(3000)]
    for k in range(0, len(raws), 97):
        engine.apply_raw_many(raws[k:k + 97], NOW)
    model = engine.catalog.models["s"]
    memo = native.native.plan_memo(model.plan)
    if bound < 200:
        assert len(memo) == bound  # full: later down sets are computed, not kept
    else:
        assert len(memo) > 200  # grown well past its first table of 64 slots
    assert all(tag == model.blame_mask(d) for d, tag in memo.items())


def test_segments_and_blame_tags_the_loops_make_are_not_tracked() -> None:
    """Stage 1's segment tuples (one per changing event) and the blame tags of new down
    sets hold only strings and numbers: the C loops make them untracked."""
    from streams import stage1
    from streams.unmapped import UnmappedTracker

    rng = random.Random(5)
    catalog = _catalog(30)
    raws = [orjson.dumps({"component": f"c{rng.randrange(30)}",
                          "state": rng.choice(("up", "down", "maintenance")),
                          "ts": NOW - 3600 + i}) for i in range(500)]
    fanout: dict[str, list[Any]] = {}
    trackers: dict[str, ComponentTracker] = {}
    done = stage1.classify(raws, None, NOW, lookup=trackers.get, catalog=catalog,
                           allowed_lateness=600.0, fanout=fanout, unmapped=UnmappedTracker())
    segments = [seg for segs in fanout.values() for seg in segs]
    assert len(segments) > 300 and done.trackers
    assert not any(map(gc.is_tracked, segments))
    engine = Engine(catalog)
    engine.apply_raw_many(raws, NOW)
    tags = [tag for svc in engine.services.values() for tag in svc.timeline.tags[1:]]
    assert len(tags) > 10
    assert not any(map(gc.is_tracked, tags))


def test_a_day_rollups_runs_are_not_tracked_on_any_path_that_makes_them() -> None:
    """``Runs`` (a day rollup's down runs) and their columns and tag list are off the
    collector's lists however they are made: built, copied, read back from a record
    with or without a packer, cut at a mark; rewritten at every services checkpoint,
    they were a third of what the young collection after one walked."""
    from streams.periods import Account, DayRollup, Runs

    tags = [(), ("a",), ("a", "b"), ("b",)]
    made = Runs((float(i), float(i) + 0.5, tags[i % 4]) for i in range(20))
    packer = Packer()
    packed = made.to_obj(packer)
    header, body = record.decode(record.join({"runs": packed}, packer.bufs), "test")
    back = [made.copy(), Runs.from_obj(made.to_obj(), "test"),
            Runs.from_obj(header["runs"], "test", body)]
    day = DayRollup("2024-03-01", 0.0, 86_400.0, 86_400.0, runs=made)
    mark = Account(runs=made).mark(10.0)
    cut = Account.at_mark(day, mark).runs
    assert 0 < len(cut) <= len(made)
    for runs in [made, *back, cut]:
        assert list(runs)[: len(cut)] == list(cut)
        for obj in (runs, runs.ab, runs.ix, runs.tags):
            assert not gc.is_tracked(obj), (runs, type(obj).__name__)
    made.append((30.0, 31.0, ("c", "d")))  # a new blamed set: the table grows, still off
    assert not gc.is_tracked(made.tags) and made[-1] == (30.0, 31.0, ("c", "d"))

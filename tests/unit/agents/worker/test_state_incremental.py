"""Trackers stored incrementally: a head and the patches that build their columns.

A checkpoint writes patches: per column, where to cut it (the first point edited since
the last write, ``Timeline._low``) and the bytes from there (in order, the points added;
from the first point touched on after a late correction, a compaction or a prune),
under keys of their own, then the head naming every patch, then tombstones (after a new
base).
Generated histories (in-order and late events, compactions, prunes) are written through
``TrackerTable.flush`` checkpoint after checkpoint; what a recovery rebuilds from the
changelog, and from every prefix of it (a worker killed between two writes), must decode
to the whole record of the tracker at the last checkpoint it covers, or the one before.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import faust.streams  # noqa: F401  # flush imports it; its first import runs `file`
import orjson
import pytest

from agents.worker import patchlog, state
from agents.worker.patchlog import HEAD as INCREMENTAL
from agents.worker.state import (
    TrackerTable,
    decode_component,
    decode_service,
    encode_component,
    encode_service,
)
from streams import native
from streams.catalog import parse_catalog
from streams.component import ComponentTracker
from streams.engine import Engine
from streams.record import MAGIC
from streams.service import ServiceTracker
from tests.fake_tables import Log, Table, flush_to, replay


@pytest.fixture(autouse=True)
def _few_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few enough patches between bases that short histories rebase many times."""
    monkeypatch.setattr(patchlog, "MAX_PATCHES", 7)


#: ``TrackerTable``'s ``small`` of the components tables (as the worker's); a test
#: switches it off to compare with the packer's path.
SMALL: Any = ComponentTracker.small_records


def comp_table(t: Table) -> TrackerTable[ComponentTracker]:
    tt = TrackerTable(t, decode_component, encode_component, ComponentTracker.to_record,
                      ComponentTracker.from_record, SMALL)
    tt.incremental_from = 512
    return tt


def svc_table(t: Table) -> TrackerTable[ServiceTracker]:
    tt = TrackerTable(t, decode_service, encode_service, ServiceTracker.to_record,
                      ServiceTracker.from_record)
    tt.incremental_from = 512
    return tt


def flush(tt: TrackerTable[Any], log: Log) -> None:
    asyncio.run(flush_to(tt, log))


CATALOG = {
    "components": {f"c{i}": {"team": "t", "kpi": 0.99} for i in range(6)},
    "services": {
        "all": {"kind": "external", "customers": ["x"], "sla": {"target": 0.999, "period": "30d"},
                "requires": [{"all": ["c0", "c1", "c2"]}]},
        "any": {"kind": "external", "customers": ["x"], "sla": {"target": 0.999, "period": "30d"},
                "requires": [{"any": ["c2", "c3", "c4", "c5"]}]},
    },
}


def storm(seed: int, n: int, late: float) -> list[list[bytes]]:
    """Batches (one per checkpoint) of events, a share ``late`` of them out of order."""
    rng = random.Random(seed)
    t0 = 1_700_000_000.0
    batches: list[list[bytes]] = []
    ts = t0
    for _ in range(n):
        batch = []
        for _ in range(rng.randrange(1, 40)):
            ts += rng.uniform(0.1, 30.0)
            at = ts - rng.uniform(0, 500) if rng.random() < late else ts
            batch.append(orjson.dumps({"component": f"c{rng.randrange(6)}",
                                       "state": rng.choice(["up", "down", "down", "maintenance"]),
                                       "ts": round(at, 3)}))
        batches.append(batch)
    return batches


def run(seed: int, late: float, prune_every: int
        ) -> tuple[Log, Log, list[dict[str, bytes]], list[int]]:
    """Checkpoints of a generated history; returns both changelogs, per checkpoint the
    whole records of every tracker, and where each ends in the services changelog."""
    engine = Engine(parse_catalog(CATALOG, "test"), allowed_lateness=600.0)
    ct, st = Table(), Table()
    comps, svcs = comp_table(ct), svc_table(st)
    clog: Log = []
    slog: Log = []
    wholes: list[dict[str, bytes]] = []
    ends: list[int] = []
    for k, batch in enumerate(storm(seed, 60, late)):
        now = orjson.loads(batch[-1])["ts"] + 1
        engine.apply_raw_many(batch, now)
        if prune_every and k % prune_every == prune_every - 1:
            newest = max(c.newest for c in engine.components.values())
            cut = newest - random.Random(seed + k).uniform(600, 5000)
            for c in engine.components.values():
                c.prune(cut, 600.0)
            for name, s in engine.services.items():
                s.prune(cut, engine.catalog.calendar(name))
        for name, c in engine.components.items():
            comps.put(name, c, 0)
        for name, s in engine.services.items():
            svcs.put(name, s, 0)
        flush(comps, clog)
        flush(svcs, slog)
        ends.append(len(slog))
        whole = {f"c/{n}": encode_component(c) for n, c in engine.components.items()}
        whole.update({f"s/{n}": encode_service(s) for n, s in engine.services.items()})
        wholes.append(whole)
    return clog, slog, wholes, ends


def recovered(clog: Log, slog: Log) -> dict[str, bytes]:
    comps, svcs = comp_table(replay(clog)), svc_table(replay(slog))
    out: dict[str, bytes] = {}
    for key in list(comps.table.data):
        if "\x1f" not in key:
            out[f"c/{key}"] = encode_component(comps.get(key))  # type: ignore[arg-type]
    for key in list(svcs.table.data):
        if "\x1f" not in key:
            out[f"s/{key}"] = encode_service(svcs.get(key))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("late", "prune_every"), [(0.0, 0), (0.2, 0), (0.1, 7)])
def test_recovery_rebuilds_the_whole_records(seed: int, late: float, prune_every: int) -> None:
    clog, slog, wholes, _ = run(seed, late, prune_every)
    assert recovered(clog, slog) == wholes[-1]
    heads = [v for k, v, _ in slog if v is not None and v.startswith(INCREMENTAL)]
    assert heads, "no service grew past the incremental threshold: the test tests nothing"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("late", "prune_every"), [(0.2, 0), (0.1, 7)])
def test_small_component_records_are_what_the_packer_writes(
        seed: int, late: float, prune_every: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small component trackers written by ``small_record`` leave the changelog and the
    store byte for byte as the packer's path does, through growing past the
    incremental threshold and back under it after prunes."""
    clog, slog, _, _ = run(seed, late, prune_every)
    monkeypatch.setattr(sys.modules[__name__], "SMALL", None)
    clog2, slog2, _, _ = run(seed, late, prune_every)
    assert clog == clog2
    assert slog == slog2
    assert any(v is not None and v.startswith(INCREMENTAL) for _, v, _ in clog), \
        "no component grew past the incremental threshold"
    assert any(v is not None and v.startswith(MAGIC) for _, v, _ in clog)


@pytest.mark.parametrize("seed", range(3))
def test_the_c_small_path_writes_what_the_python_loop_writes(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``TrackerTable``'s path for small objects in C (``_native.small_records`` and
    ``small_writes``) leaves the changelogs and the stores byte for byte as the Python
    loop does, over keys in every state: small, grown past the incremental threshold
    (heads of patches), small again after prunes, and records of more than a chunk
    (stored in parts: here most of them, with a chunk of 300 bytes)."""
    if native.native is None:
        pytest.skip("the C extension is not built")
    monkeypatch.setattr(state, "CHUNK_SIZE", 300)
    clog, slog, _, _ = run(seed, 0.1, 7)
    with monkeypatch.context() as m:
        m.setattr(native, "native", None)
        clog2, slog2, _, _ = run(seed, 0.1, 7)
    assert clog == clog2
    assert slog == slog2
    assert any(b"\x1f" in k for k, _, _ in clog), "no record was stored in parts"
    assert any(v is not None and v.startswith(MAGIC) for _, v, _ in clog)
    assert any(v is not None and v.startswith(INCREMENTAL) for _, v, _ in clog)


def test_a_checkpoint_writes_only_what_changed() -> None:
    """In order, checkpoints write the points added (and a new base now and then), not
    the history again each time."""
    _, slog, wholes, _ = run(3, 0.0, 0)
    whole_bytes = sum(len(v) for w in wholes for k, v in w.items() if k.startswith("s/"))
    written = sum(len(v or b"") for _, v, _ in slog)
    assert written < whole_bytes / 2, (written, whole_bytes)


@pytest.mark.parametrize("seed", range(4))
def test_a_crash_between_writes_recovers_a_checkpoint(seed: int) -> None:
    """Every prefix of the changelog decodes to the records of a checkpoint: the last
    whose head it holds (pieces before their head, tombstones after it)."""
    _, slog, wholes, ends = run(seed, 0.15, 9)
    for cut in range(len(slog) + 1):
        svcs = svc_table(replay(slog[:cut]))
        done = sum(1 for e in ends if e <= cut)  # checkpoints wholly written
        for name in ("all", "any"):
            if name not in svcs.table.data:
                continue
            got = encode_service(svcs.get(name))  # type: ignore[arg-type]
            ok = {wholes[done - 1][f"s/{name}"]} if done else set()
            if done < len(wholes):
                ok.add(wholes[done][f"s/{name}"])
            assert got in ok, f"cut at {cut}: {name} is no checkpoint's record"


def test_a_head_whose_pieces_are_missing_is_refused_by_name() -> None:
    _, slog, _, _ = run(1, 0.0, 0)
    t = replay(slog)
    piece = next(k for k in t.data if k.startswith("any\x1f"))
    del t.data[piece]
    with pytest.raises(ValueError, match=r"tracker 'any'.*missing"):
        svc_table(t).get("any")
    t = replay(slog)
    t.data[piece] = t.data[piece][:-1] + bytes([t.data[piece][-1] ^ 1])
    with pytest.raises(ValueError, match=r"tracker 'any'.*does not match"):
        svc_table(t).get("any")


@pytest.mark.parametrize("old", ["record", "json"])
def test_older_whole_values_load_and_move_to_pieces(old: str) -> None:
    engine = Engine(parse_catalog(CATALOG, "test"), allowed_lateness=600.0)
    for batch in storm(5, 40, 0.1):
        engine.apply_raw_many(batch, orjson.loads(batch[-1])["ts"] + 1)
    t = Table()
    for name, s in engine.services.items():
        t.data[name] = (encode_service(s) if old == "record"
                        else orjson.dumps(s.to_obj()))
    svcs = svc_table(t)
    log: Log = [(k.encode(), v, 0) for k, v in t.data.items()]
    for name in engine.services:
        got = svcs.get(name)
        assert got is not None and encode_service(got) == encode_service(engine.services[name])
        svcs.touch(name, 0)
    flush(svcs, log)
    assert any(v is not None and v.startswith(INCREMENTAL) for _, v, _ in log)
    back = svc_table(replay(log))
    for name, s in engine.services.items():
        assert encode_service(back.get(name)) == encode_service(s)  # type: ignore[arg-type]


def test_a_pruned_tracker_small_again_is_whole_and_its_pieces_deleted() -> None:
    engine = Engine(parse_catalog(CATALOG, "test"), allowed_lateness=600.0)
    t = Table()
    svcs = svc_table(t)
    log: Log = []
    for batch in storm(2, 40, 0.0):
        engine.apply_raw_many(batch, orjson.loads(batch[-1])["ts"] + 1)
    for name, s in engine.services.items():
        svcs.put(name, s, 0)
    flush(svcs, log)
    assert any(k.startswith("all\x1f") for k in t.data)
    s = engine.services["all"]
    s.prune(s.timeline.ts[-2], engine.catalog.calendar("all"))
    svcs.put("all", s, 0)
    flush(svcs, log)
    rebuilt = replay(log)
    assert not any(k.startswith("all\x1f") for k in rebuilt.data)
    assert not rebuilt.data["all"].startswith(INCREMENTAL)
    assert encode_service(svc_table(rebuilt).get("all")) == encode_service(s)  # type: ignore[arg-type]


def test_the_tables_cache_entries_are_off_the_collectors_lists() -> None:
    """What a table keeps per key, (stored bytes, tracker), is not walked by the cyclic
    collector (a checkpoint makes one per changed key: ``state._entry``): after ``put``,
    after a write whole or in patches, and after a read of what recovery rebuilt."""
    import gc

    from streams import native

    if native.native is None:
        pytest.skip("untracking needs the C extension")
    engine = Engine(parse_catalog(CATALOG, "test"), allowed_lateness=600.0)
    comps, svcs = comp_table(Table()), svc_table(Table())
    clog: Log = []
    slog: Log = []
    kinds: set[bool] = set()  # entries of whole records (False) and of heads (True)
    for batch in storm(5, 40, 0.1):
        engine.apply_raw_many(batch, orjson.loads(batch[-1])["ts"] + 1)
        for name, c in engine.components.items():
            comps.put(name, c, 0)
        for name, s in engine.services.items():
            svcs.put(name, s, 0)
        for tt in (comps, svcs):
            assert tt._cache and not any(map(gc.is_tracked, tt._cache.values()))
        flush(comps, clog)
        flush(svcs, slog)
        for tt in (comps, svcs):
            assert not any(map(gc.is_tracked, tt._cache.values()))
            kinds.update(e[0].startswith(INCREMENTAL) for e in tt._cache.values())
    assert kinds == {True, False}, "both writes (whole and in patches) made entries"
    back = comp_table(replay(clog)), svc_table(replay(slog))
    for tt, live in zip(back, (engine.components, engine.services), strict=True):
        for name in live:
            assert tt.get(name) is not None
        assert len(tt._cache) == len(live)
        assert not any(map(gc.is_tracked, tt._cache.values()))
    gc.collect()  # reachable all the same: nothing the tables hold is lost
    assert all(comps.get(name) is c for name, c in engine.components.items())

"""The day-rollups table keeps each value in a block of about its size: a running day
of a flapping service is rewritten at every services checkpoint and every owned
service keeps one, so a value held in a larger buffer than it needs (orjson's) would
grow the worker by its slack times the services. Generated outages (many runs a day,
some days without any) through ``RollupKeeper.update`` and its table's flush; each
value stored is measured with glibc's ``malloc_usable_size``."""

from __future__ import annotations

import asyncio
import ctypes
import math
import random
import time
from typing import Any

import orjson
import pytest

from agents.settings import WorkerSettings
from agents.worker.rollups import RollupKeeper
from streams.catalog import parse_catalog
from streams.record import is_record
from streams.service import ServiceTracker
from streams.states import State
from tests.fake_tables import FakeRuntime, Table, flush_to

CATALOG = {
    "components": {f"c{i}": {"team": "t", "kpi": 0.99} for i in range(8)},
    "services": {
        f"s{k}": {"kind": "external", "customers": ["x"], "sla": {"target": 0.99, "period": "30d"},
                  "requires": [{"any": [f"c{k}", f"c{k + 1}"]}, f"c{(k + 3) % 8}"]}
        for k in range(6)
    },
}

#: A bytes object's header before its data (CPython 3.11, 64 bit): its block holds both.
HEADER = 33


def _usable() -> Any:
    try:
        f = ctypes.CDLL(None).malloc_usable_size
    except (OSError, AttributeError):
        pytest.skip("not glibc")
    f.argtypes, f.restype = [ctypes.c_void_p], ctypes.c_size_t
    return f


@pytest.mark.parametrize("seed", range(4))
def test_each_stored_rollup_sits_in_a_block_of_its_size(seed: int) -> None:
    usable = _usable()
    rng = random.Random(seed)
    catalog = parse_catalog(CATALOG, "test")
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(), Table())
    keeper = RollupKeeper(rt, Table(changelog="rollups-changelog"))
    now = time.time()
    for name in catalog.services:
        tracker = ServiceTracker(name)
        t = now - rng.uniform(1, 3) * 86400.0
        segments = []
        for _ in range(rng.randrange(0, 400)):  # flapping: many runs, or none
            comp = f"c{rng.randrange(8)}"
            t += rng.uniform(1.0, 300.0)
            segments.append((comp, t, math.inf, int(rng.choice([State.DOWN, State.UP]))))
        segments.sort(key=lambda s: s[1])
        tracker.apply_many(segments, catalog.models[name])
        rt.services.put(name, tracker, 0)
        keeper.mark(name, [now - 4 * 86400.0])
    keeper.update()
    asyncio.run(flush_to(keeper.table, []))
    values = list(keeper.table.table.data.values())
    # what the measure tells apart: orjson's buffer holds a larger block than its value
    probe = orjson.dumps("x" * 600)
    assert usable(id(probe)) > HEADER + len(probe) + 64
    assert any(is_record(v) for v in values) and any(not is_record(v) for v in values)
    for v in values:
        if len(v) > 512:  # smaller ones come from Python's own allocator
            assert usable(id(v)) <= HEADER + len(v) + 64, (len(v), is_record(v))

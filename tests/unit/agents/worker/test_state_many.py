"""Stage 1 reads and marks a slice's component trackers at once (``get_many``,
``touch_many``): the same as ``get`` and ``touch`` of each key, whether the key changed
since the last checkpoint, is only stored, or is missing."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from agents.worker.state import TrackerTable
from tests.fake_tables import Table, flush_to


@pytest.mark.parametrize("seed", range(4))
def test_get_many_and_touch_many_are_get_and_touch_of_each_key(seed: int) -> None:
    rng = random.Random(seed)
    tt: TrackerTable[Any] = TrackerTable(Table(), orjson.loads, orjson.dumps)
    for k in rng.sample(range(30), 15):
        tt.put(f"s{k}", {"k": k}, 0)
    asyncio.run(flush_to(tt, []))
    for k in rng.sample(range(30), 10):  # some changed since the flush, some new
        tt.put(f"s{k}", {"k": k, "new": True}, 1)
    keys = {f"s{k}" for k in rng.sample(range(40), 20)}  # stored, changed and missing
    got = tt.get_many(keys)
    assert got == {k: v for k in keys if (v := tt.get(k)) is not None}
    assert all(got[k] is tt.get(k) for k in got)
    assert tt.get_many(list(keys)) == got
    touched = sorted(got)[:3]
    tt.touch_many(touched, 2)
    assert all(tt._dirty[k] == 2 for k in touched)

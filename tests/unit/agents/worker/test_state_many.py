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


def _aged_table(seed: int) -> tuple[TrackerTable[Any], set[str]]:
    """A table whose keys are in every state ``get`` tells apart: changed since the last
    flush, stored and cached, stored under other bytes than the cache holds (recovery
    wrote them), cached but no longer stored, only stored, and missing; and the keys to
    ask for."""
    rng = random.Random(seed)
    tt: TrackerTable[Any] = TrackerTable(Table(), orjson.loads, orjson.dumps)
    for k in rng.sample(range(40), 25):
        tt.put(f"s{k}", {"k": k}, 0)
    asyncio.run(flush_to(tt, []))
    for k in range(40):
        tt.get(f"s{k}")  # into the cache
    store = tt.table.data
    stored = sorted(store)
    for key in rng.sample(stored, 4):  # recovery replaced the bytes
        store[key] = orjson.dumps({"k": key, "recovered": True})
    for key in rng.sample(stored, 3):  # recovery deleted the key
        store.pop(key, None)
    for k in rng.sample(range(40, 50), 3):  # only stored (another worker wrote them)
        store[f"s{k}"] = orjson.dumps({"k": k})
    for k in rng.sample(range(50), 8):
        tt.put(f"s{k}", {"k": k, "new": True}, 1)
    return tt, {f"s{k}" for k in rng.sample(range(55), 35)}


@pytest.mark.parametrize("seed", range(6))
def test_get_many_in_c_and_in_python_is_get_of_each_key(seed: int, engine_path: str) -> None:
    """The C loop of cache hits (``_native.cached_many``) and its Python twin
    (``engine_path``) give what ``get`` of each key gives, on a table of the same
    history, and leave the cache as ``get`` does."""
    one, keys = _aged_table(seed)
    want = {k: v for k in keys if (v := one.get(k)) is not None}
    other, _ = _aged_table(seed)
    got = other.get_many(keys)
    assert got == want
    assert all(got[k] is other.get(k) for k in got)
    assert {k: v[0] for k, v in other._cache.items()} == {k: v[0] for k, v in one._cache.items()}


@pytest.mark.parametrize("seed", range(6))
def test_get_many_with_touch_is_get_then_touch_of_each_key_found(seed: int,
                                                                 engine_path: str) -> None:
    """Stage 1 marks what it gets as changed in the same call (``touch``), in C and in
    Python (``engine_path``): the same objects as without, and afterwards the changed
    keys are those of ``get`` and ``touch(key, p)`` of each key found, in every state a
    key may be in; a missing key is not marked."""
    one, keys = _aged_table(seed)
    want = {k: v for k in keys if (v := one.get(k)) is not None}
    for k in want:
        one.touch(k, 5)
    other, _ = _aged_table(seed)
    got = other.get_many(keys, touch=5)
    assert got == want
    assert other._dirty == one._dirty
    assert {k: v[0] for k, v in other._cache.items()} == {k: v[0] for k, v in one._cache.items()}
    assert any(k not in got for k in keys)  # the case of a missing key was there

"""``TrackerTable.get_stored_many`` gives each key's ``get_stored``, on the C loop
(``_native.stored_hits``) and on the Python one: the collector reads every component's
tracker and stored bytes through it at a scrape after a backlog, and keeps a line only
while those bytes are the ones it was computed from."""

from __future__ import annotations

import random

import pytest

from agents.worker.state import TrackerTable, decode_component, encode_component
from streams.component import ComponentTracker
from streams.events import ComponentEvent
from streams.states import State
from tests.fake_tables import Table

pytestmark = pytest.mark.usefixtures("engine_path")

T0 = 1_700_000_000.0


def _tracker(key: str, downs: int) -> ComponentTracker:
    tr = ComponentTracker(key)
    for k in range(downs):
        tr.apply(ComponentEvent(key, State.DOWN if k % 2 == 0 else State.UP, T0 + k, None, None),
                 600.0)
    return tr


@pytest.mark.parametrize("seed", range(20))
def test_get_stored_many_is_each_keys_get_stored(seed: int) -> None:
    rng = random.Random(seed)
    table = Table()
    tt = TrackerTable(table, decode_component, encode_component)
    keys = [f"c{i}" for i in range(rng.randrange(1, 40))]
    for key in keys:
        r = rng.random()
        if r < 0.15:
            continue  # never stored
        table.data[key] = encode_component(_tracker(key, rng.randrange(4)))
        if r < 0.6:
            tt.get(key)  # decoded: a cache hit while the bytes stay
        r = rng.random()
        if r < 0.15:  # stored again, equal bytes in another object
            table.data[key] = bytes(bytearray(table.data[key]))
        elif r < 0.3:  # stored again, other bytes (another worker's write, a recovery)
            table.data[key] = encode_component(_tracker(key, rng.randrange(4, 7)))
        elif r < 0.4:  # changed here, not yet written
            tr = tt.get(key)
            assert tr is not None
            tt.put(key, tr, 0)
        elif r < 0.45:
            del table.data[key]  # gone from the store (a tombstone)
    asked = [*keys, "missing", *rng.sample(keys, min(3, len(keys)))]
    # Asked first of the cache as the changes left it (misses decode), or after each
    # key's get_stored (hits): either way the same objects and bytes.
    if seed % 2:
        want = [(key, tt.get_stored(key)) for key in asked]
        got = tt.get_stored_many(asked)
    else:
        got = tt.get_stored_many(asked)
        want = [(key, tt.get_stored(key)) for key in asked]
    assert len(got) == len(asked)
    for (key, (obj, raw)), (gobj, graw) in zip(want, got, strict=True):
        assert gobj is obj, key
        assert graw is raw or graw == raw, key
        if raw is not None:
            assert table.data[key] == raw  # what the object is the decoding of

"""Table values larger than a Kafka message are stored in parts, and read back whole.

Found by the 100,000-event crash test: a busy service's tracker serialized to 1.15 MB,
over the producer's (and Kafka's default) 1 MB limit, and the worker stopped on every
checkpoint. ``TrackerTable`` now writes such a value as parts of a new version, then a
head naming them, then tombstones for the old version's parts. What a recovering worker
rebuilds from any prefix of that changelog must be a whole value: the new one, or the
one before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from agents.worker.state import CHUNKED, TrackerTable
from tests.fake_tables import Table, replay
from tests.fake_tables import flush_to as flush


def value(n: int, tag: str) -> dict[str, Any]:
    return {"tag": tag, "points": [[i * 1.5, i % 3] for i in range(n)]}


def table_of(t: Table, chunk: int) -> TrackerTable[dict[str, Any]]:
    tt: TrackerTable[dict[str, Any]] = TrackerTable(t, orjson.loads, orjson.dumps)
    tt.chunk_size = chunk
    return tt


@pytest.mark.parametrize("sizes", [[10, 5000], [5000, 10], [5000, 6000, 7000], [3000, 3000]])
def test_values_round_trip_in_parts_through_the_changelog(sizes: list[int]) -> None:
    chunk = 4096
    t = Table()
    tt = table_of(t, chunk)
    log: list[tuple[bytes, bytes | None, int]] = []
    versions = []
    for i, n in enumerate(sizes):
        v = value(n, f"v{i}")
        tt.put("svc", v, 3)
        start = len(log)
        asyncio.run(flush(tt, log))
        written = log[start:]
        raw = orjson.dumps(v)
        if len(raw) > chunk:
            # parts first, then the head, then the old parts' tombstones
            heads = [j for j, (k, _, _) in enumerate(written) if k == b"svc"]
            assert len(heads) == 1
            assert written[heads[0]][1].startswith(CHUNKED)  # type: ignore[union-attr]
            assert all(len(val or b"") <= chunk for k, val, _ in written if k != b"svc")
            assert all(val is not None for _, val, _ in written[: heads[0]])
            assert all(val is None for _, val, _ in written[heads[0] + 1:])
        assert all(p == 3 for _, _, p in written)
        versions.append(v)
        # Read back by a fresh worker from the store, and from the changelog.
        assert table_of(t, chunk).get("svc") == v
        assert table_of(replay(log), chunk).get("svc") == v
    # No part outlives the value it belongs to.
    live_parts = [k for k in replay(log).data if k != "svc"]
    last_raw = orjson.dumps(versions[-1])
    expected_parts = -(-len(last_raw) // chunk) if len(last_raw) > chunk else 0
    assert len(live_parts) == expected_parts
    assert sorted(t.data) == sorted(replay(log).data)


def test_every_prefix_of_the_changelog_reads_as_a_whole_value() -> None:
    """A crash can cut the changelog anywhere; recovery sees the old or the new value."""
    chunk = 2048
    t = Table()
    tt = table_of(t, chunk)
    log: list[tuple[bytes, bytes | None, int]] = []
    values = [value(3000, "a"), value(4000, "b"), value(20, "c"), value(3500, "d")]
    ends = []
    for v in values:
        tt.put("svc", v, 0)
        asyncio.run(flush(tt, log))
        ends.append(len(log))
    for cut in range(1, len(log) + 1):
        got = table_of(replay(log[:cut]), chunk).get("svc")
        done = [i for i, e in enumerate(ends) if e <= cut]
        # Between the head and the end of a flush only tombstones follow.
        candidates: list[Any] = [values[done[-1]]] if done else [None]
        if len(done) < len(values):
            candidates.append(values[len(done)])
        assert got in candidates, f"cut at {cut}: {got and got['tag']}"

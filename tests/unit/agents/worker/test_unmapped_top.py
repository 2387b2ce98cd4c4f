"""The most frequent unrecognized components, in bounded memory whatever the flood.

The space-saving sketch is checked against exact counts: its guarantees (every id seen
more than n/capacity times is there; each count overstates by at most its error), its
size under a flood of made-up ids, and its round trip through the partition counters'
stored form.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.unmapped import SpaceSaving, merge_top


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 40).map(lambda i: f"ghost-{i}"), max_size=400),
       st.integers(2, 30))
def test_space_saving_guarantees(stream: list[str], capacity: int) -> None:
    sketch = SpaceSaving(capacity)
    for item in stream:
        sketch.add(item)
    exact = Counter(stream)
    top = sketch.top(capacity)
    assert len(top) == min(capacity, len(exact))
    assert sketch.n == len(stream)
    for item, count, error in top:
        assert count - error <= exact[item] <= count, (item, count, error, exact[item])
    found = {item for item, _, _ in top}
    for item, n in exact.items():
        if n > len(stream) / capacity:
            assert item in found, (item, n)
    if len(exact) <= capacity:  # exact while there is room for every id
        assert {(i, c) for i, c, _ in top} == set(exact.items())
    # Buckets and counters agree (the O(1) structure is consistent).
    assert sum(len(b) for b in sketch._buckets.values()) == len(sketch._counts)
    if sketch._counts:
        assert sketch._min == min(c for c, _ in sketch._counts.values())


def test_a_flood_of_made_up_ids_stays_bounded_and_keeps_the_heavy_ones() -> None:
    rnd = random.Random(1)
    sketch = SpaceSaving()
    heavy = {f"legacy-host-{i}": 2000 - 150 * i for i in range(10)}
    stream = [c for c, n in heavy.items() for _ in range(n)]
    stream += [f"made-up-{i}" for i in range(200_000)]
    rnd.shuffle(stream)
    for item in stream:
        sketch.add(item)
    assert len(sketch._counts) == sketch.capacity == 400
    top = sketch.top(100)
    assert [c for c, _, _ in top[:10]] == list(heavy)
    for c, count, error in top[:10]:
        assert count - error <= heavy[c] <= count


def test_partition_counters_keep_the_sketch() -> None:
    from agents.worker.state import PartitionStats
    from streams.states import DOWN

    stats = PartitionStats()
    for i in range(1000):
        stats.unmapped.observe(f"ghost-{i % 7 if i % 3 else i}", DOWN, float(i))
    again = PartitionStats.from_bytes(stats.to_bytes())
    assert again.unmapped.top.top(100) == stats.unmapped.top.top(100)
    assert again.unmapped.top.n == 1000
    other = PartitionStats()
    other.unmapped.observe("elsewhere", DOWN, 1.0)
    merged = merge_top([again.unmapped.top, other.unmapped.top], 3)
    assert merged[0][1] >= merged[1][1] >= merged[2][1]

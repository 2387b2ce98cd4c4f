"""``Partitioner.others``: the keys of a set not in a partition, as ``Partitioner`` of
each key says, in C over the memo and in Python, whatever the memo holds (nothing yet,
some keys, all of them, or a clear in between at its bound). ``Partitioner.many``: the
partition of each key of a list, in order, whatever the memo holds."""

from __future__ import annotations

import random

import pytest

from agents.worker import partitioning
from agents.worker.partitioning import Partitioner
from streams import native


@pytest.mark.parametrize("path", ["native", "python"])
@pytest.mark.parametrize("seed", range(8))
def test_others_are_the_keys_of_other_partitions(seed: int, path: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if path == "python":
        monkeypatch.setattr(native, "native", None)
    elif native.native is None:
        pytest.skip("no C extension")
    rng = random.Random(seed)
    monkeypatch.setattr(partitioning, "_CACHE_LIMIT", rng.choice([5, 50, 100_000]))
    n = rng.choice([1, 2, 3, 8, 16])
    part = Partitioner(n)
    keys = [f"c{rng.randrange(200)}" if rng.random() < 0.9 else f"ünï-{k}" for k in range(60)]
    for key in rng.sample(keys, rng.randrange(len(keys))):
        part(key)  # some in the memo already
    reference = Partitioner(n)
    for p in range(n):
        asked = set(rng.sample(keys, rng.randrange(1, len(keys))))
        want = {k for k in asked if reference(k) != p}
        assert part.others(asked, p) == want
    assert part.others(set(), 0) == set()


@pytest.mark.parametrize("seed", range(8))
def test_many_gives_each_keys_partition_in_order(seed: int, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    from kafka.partitioner.default import murmur2

    rng = random.Random(seed)
    monkeypatch.setattr(partitioning, "_CACHE_LIMIT", rng.choice([5, 50, 100_000]))
    n = rng.choice([1, 2, 3, 8, 16])
    part = Partitioner(n)
    for _ in range(5):
        keys = [f"c{rng.randrange(200)}" if rng.random() < 0.9 else f"ünï-{rng.randrange(9)}"
                for _ in range(rng.randrange(0, 120))]
        for key in rng.sample(keys, rng.randrange(len(keys) + 1)):
            part(key)  # some in the memo already
        assert part.many(keys) == [(murmur2(k.encode()) & 0x7FFFFFFF) % n for k in keys]

"""The origin marks that let a table partition count each input record once
(``agents/worker/routing.py``), against a brute-force set of counted origins."""

from __future__ import annotations

import random
from dataclasses import dataclass

from agents.worker import routing


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    headers: list[tuple[str, bytes]] | None = None


def test_forwarded_record_names_its_origin() -> None:
    rec = Rec("x-rerouted", 2, 7, routing.origin_headers("component-events", 5, 1234))
    assert routing.origin_of(rec) == ("component-events", 5, 1234)
    assert routing.origin_of(Rec("component-events", 1, 9)) == ("component-events", 1, 9)
    bad = Rec("x-rerouted", 2, 7, [(routing.H_TOPIC, b"t"), (routing.H_PARTITION, b"z"),
                                   (routing.H_OFFSET, b"1")])
    assert routing.origin_of(bad) == ("x-rerouted", 2, 7)


def test_marks_count_each_origin_once_under_redelivery() -> None:
    """Several origin partitions, each delivered in offset order, with crashes that
    redeliver from an earlier committed offset: an origin is first exactly once."""
    rnd = random.Random(18)
    marks: dict[str, int] = {}
    counted: set[tuple[str, int, int]] = set()
    position = {p: 0 for p in range(3)}
    for _ in range(300):
        p = rnd.randrange(3)
        if rnd.random() < 0.15:  # a crash: redelivered from an earlier offset
            position[p] = max(0, position[p] - rnd.randrange(1, 20))
        n = rnd.randrange(1, 10)
        origins = [("in", p, o) for o in range(position[p], position[p] + n)]
        position[p] += n
        firsts = routing.first_times(marks, origins)
        for i, origin in enumerate(origins):
            first = firsts is None or firsts[i]
            assert first == (origin not in counted), origin
            counted.add(origin)


def test_local_run_and_forwarded_share_marks() -> None:
    marks: dict[str, int] = {}
    recs = [Rec("in", 1, o) for o in range(10, 15)]
    assert routing.first_times_run(marks, "in", 1, recs) is None
    # The same records forwarded after a switch of the way partition 1 is read.
    again = routing.first_times(marks, [("in", 1, o) for o in range(12, 17)])
    assert again == [False, False, False, True, True]
    assert routing.first_times_run(marks, "in", 1, [Rec("in", 1, o) for o in range(16, 18)]) \
        == [False, True]

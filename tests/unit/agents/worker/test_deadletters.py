"""The DLQ marks against every interleaving: workers that crash at any point, table
partitions fed by several logs whose batches interleave differently in every run, DLQ
partitions shared by several table partitions. Whatever happens, the DLQ ends up with
each rejected record exactly once.

A model of the worker's side of the protocol around the real ``Ledger`` and the real
origin marks (``routing.first_times``): a run takes every table partition over (reads
the DLQ from the restored marks, ``Ledger.starts``/``adopt``), classifies records of
its logs from the start (a redelivery from any committed offset is a special case),
dead-letters first deliveries it has not found, and writes checkpoints of some or all
partitions' counters (a crash may cut a checkpoint short) until it crashes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.worker import routing
from agents.worker.deadletters import Found, Ledger, Scan


@dataclass
class Counters:
    marks: dict[str, int] = field(default_factory=dict)
    dlq: int = 0


@dataclass
class World:
    """The broker: the DLQ partitions and the last counters written per table partition."""

    table_partitions: int
    dlq_partitions: int
    #: per table partition, its logs: per log, whether each record is rejected
    logs: list[list[list[bool]]]
    dlq: list[list[Found]] = field(default_factory=list)
    written: dict[int, Counters] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dlq = [[] for _ in range(self.dlq_partitions)]

    def origin(self, q: int, j: int, offset: int) -> routing.Origin:
        return (f"log{j}", q, offset)


class Run:
    """One worker's life: assignment, batches, checkpoints, until it stops or crashes."""

    def __init__(self, world: World) -> None:
        self.world = world
        owned = range(world.table_partitions)
        self.counters = {q: copy.deepcopy(world.written.get(q, Counters())) for q in owned}
        self.ledger = Ledger(world.dlq_partitions)
        starts = self.ledger.starts(owned, lambda q: self.counters[q].dlq)
        scan = Scan(reached=dict(starts))
        for k, start in starts.items():
            scan.found[k] = list(world.dlq[k][start:])
            scan.reached[k] = len(world.dlq[k])
        self.ledger.adopt(scan, owned)
        self.position = {(q, j): 0 for q in owned for j in range(len(world.logs[q]))}

    def batch(self, q: int, j: int, n: int) -> None:
        log = self.world.logs[q][j]
        lo = self.position[(q, j)]
        hi = min(len(log), lo + n)
        self.position[(q, j)] = hi
        origins = [self.world.origin(q, j, off) for off in range(lo, hi)]
        firsts = routing.first_times(self.counters[q].marks, origins)
        for i, origin in enumerate(origins):
            if (firsts is None or firsts[i]) and log[origin[2]] and not self.ledger.seen(q, origin):
                k = self.ledger.dlq_partition(q)
                self.world.dlq[k].append(Found(origin, len(self.world.dlq[k]), q))
                self.ledger.delivered(k, len(self.world.dlq[k]) - 1)

    def checkpoint(self, partitions: list[int]) -> None:
        """Write the counters of ``partitions`` (all of them, unless a crash cut the
        checkpoint short)."""
        for q in range(self.world.table_partitions):
            c = self.counters[q]
            c.dlq = self.ledger.mark(q, c.dlq, c.marks)
        for q in partitions:
            self.world.written[q] = copy.deepcopy(self.counters[q])

    def finish(self) -> None:
        for (q, j), pos in self.position.items():
            self.batch(q, j, len(self.world.logs[q][j]) - pos)
        self.checkpoint(list(range(self.world.table_partitions)))


@st.composite
def worlds(draw: st.DrawFn) -> World:
    tables = draw(st.integers(1, 4))
    dlq = draw(st.integers(1, tables))
    logs = [[draw(st.lists(st.booleans(), min_size=1, max_size=8))
             for _ in range(draw(st.integers(1, 3)))] for _ in range(tables)]
    return World(tables, dlq, logs)


@settings(max_examples=400, deadline=None)
@given(worlds(), st.data())
def test_each_rejection_is_dead_lettered_once(world: World, data: st.DataObject) -> None:
    crashes = data.draw(st.integers(1, 4), label="crashes")
    for _ in range(crashes):
        run = Run(world)
        for _ in range(data.draw(st.integers(0, 12), label="steps")):
            if data.draw(st.integers(0, 3)) == 0:
                parts = data.draw(st.lists(st.integers(0, world.table_partitions - 1),
                                           unique=True), label="checkpointed")
                run.checkpoint(parts)
            else:
                q = data.draw(st.integers(0, world.table_partitions - 1), label="q")
                j = data.draw(st.integers(0, len(world.logs[q]) - 1), label="log")
                run.batch(q, j, data.draw(st.integers(1, 4), label="records"))
    Run(world).finish()
    sent = [f.origin for k in world.dlq for f in k]
    rejected = [world.origin(q, j, off) for q, logs in enumerate(world.logs)
                for j, log in enumerate(logs) for off, bad in enumerate(log) if bad]
    assert sorted(sent) == sorted(rejected)


def test_a_mark_waits_for_a_predecessors_rejection_to_be_counted() -> None:
    """Table partition 0 is fed by two logs; a predecessor dead-lettered record 0 of log
    0 and crashed. This run dead-letters log 1's record first and checkpoints before it
    reaches log 0 again: the mark must not pass the predecessor's record."""
    world = World(1, 1, [[[True], [True]]])
    first = Run(world)
    first.batch(0, 0, 1)  # crash: nothing checkpointed
    second = Run(world)
    second.batch(0, 1, 1)
    second.checkpoint([0])
    assert world.written[0].dlq == 0  # not past the predecessor's record at offset 0
    Run(world).finish()
    assert len(world.dlq[0]) == 2

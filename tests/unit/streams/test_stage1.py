"""Stage 1's domain call against the brute-force reading of CONTRACT §1.

Generated messages (valid events, late ones, duplicates, invalid bytes, unmapped and
made-up components) are cut into batches and classified for one partition that owns
half of the components: what ``classify`` counts, dead-letters and sends away must be
what ``tests/exact_reference.py`` says of the same bytes, and a redelivered batch
changes nothing but the segments it re-sends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import stage1
from streams.catalog import parse_catalog
from streams.component import ComponentTracker
from streams.unmapped import UnmappedTracker
from tests.exact_reference import Expected

NOW = 1_800_000_000.0
CATALOG = {
    "components": {c: {"team": "t"} for c in ("a", "b", "c", "d", "lone")},
    "services": {
        "s1": {"kind": "external", "customers": ["x"], "sla": {"target": 0.99, "period": "1d"},
               "requires": [{"any": ["a", "b"]}, "c"]},
        "s2": {"kind": "internal", "customers": [], "sla": {"target": 0.9, "period": "1d"},
               "requires": [{"at_least": 1, "of": ["c", "d"]}]},
    },
}
HOME = frozenset({"a", "c", "lone", "ghost"})  # the components this partition owns

_event = st.builds(
    lambda c, s, dt: orjson.dumps({"component": c, "state": s, "ts": NOW - 3600 + dt}),
    st.sampled_from(["a", "b", "c", "d", "lone", "ghost"]),
    st.sampled_from(["up", "down", "maintenance", "DOWN"]),
    st.sampled_from([0.0, 1.0, 60.0, 700.0, 1500.0, 3000.0]),
)
_junk = st.sampled_from([b"not json", b"[1]", b'{"component": "a"}',
                         b'{"component": "a", "state": "sideways", "ts": 1}',
                         orjson.dumps({"component": "a", "state": "up", "ts": NOW + 3600})])
messages = st.lists(st.one_of(_event, _event, _event, _junk), min_size=1, max_size=60)


def _run(values: list[bytes], cuts: list[int], again: bool, by_set: bool = False
         ) -> tuple[Counter[str], Counter[Any], list[bytes], int, list[bytes]]:
    catalog = parse_catalog(CATALOG, "test")
    table: dict[str, ComponentTracker] = {}
    counts: Counter[str] = Counter()
    dlq: Counter[Any] = Counter()
    away: list[bytes] = []
    away_again: list[bytes] = []
    segments = 0
    bounds = sorted({0, len(values), *[c % (len(values) + 1) for c in cuts]})
    for lo, hi in pairwise(bounds):
        batch = values[lo:hi]
        for delivery in ((None, [False] * len(batch)) if again else (None,)):
            fanout: dict[str, list[Any]] = {}
            where: dict[str, Any] = (
                {"elsewhere": lambda cs: [c for c in cs if c not in HOME]} if by_set
                else {"here": HOME.__contains__})
            done = stage1.classify(batch, delivery, NOW, lookup=table.get, catalog=catalog,
                                   allowed_lateness=600.0, fanout=fanout,
                                   unmapped=UnmappedTracker(), **where)
            for c in done.created:
                table[c] = done.trackers[c]
            counts.update(done.counts)
            dlq.update((batch[i], reason.split(":")[0]) for i, reason in done.dead_letters)
            away += [batch[i] for i, _ in done.away]
            away_again += [batch[i] for i, _ in done.away_again]
            segments += sum(map(len, fanout.values()))
    return counts, dlq, away, segments, away_again


def _home_values(values: list[bytes]) -> list[bytes]:
    out = []
    for raw in values:
        try:
            obj = orjson.loads(raw)
            comp = obj.get("component") if isinstance(obj, dict) else None
        except orjson.JSONDecodeError:
            comp = None
        if not isinstance(comp, str) or comp in HOME or "state" not in obj or "ts" not in obj:
            out.append(raw)  # not routable: classified where it was read
        elif isinstance(obj.get("state"), str) and obj["state"].lower() not in (
                "up", "down", "maintenance"):
            out.append(raw)
    return out


@settings(max_examples=200, deadline=None)
@given(values=messages, cuts=st.lists(st.integers(0, 60), max_size=4), by_set=st.booleans())
def test_outcomes_and_dead_letters_are_the_references(values: list[bytes], cuts: list[int],
                                                      by_set: bool) -> None:
    """Whether the partition's components are told by ``here`` or ``elsewhere``."""
    counts, dlq, away, _, away_again = _run(values, cuts, again=False, by_set=by_set)
    home = _home_values(values)
    expected = Expected(_yaml(), home, now=NOW)
    got = {k: counts.get(k, 0) for k in expected.counts}
    assert got == expected.counts
    assert dlq == expected.dlq
    # every first delivery of another partition's component is sent away, once
    assert Counter(away) == Counter(values) - Counter(home)
    assert away_again == []


@settings(max_examples=100, deadline=None)
@given(values=messages, cuts=st.lists(st.integers(0, 60), max_size=4), by_set=st.booleans())
def test_a_redelivered_batch_counts_and_dead_letters_nothing(values: list[bytes],
                                                           cuts: list[int], by_set: bool) -> None:
    once = _run(values, cuts, again=False, by_set=by_set)
    twice = _run(values, cuts, again=True, by_set=by_set)
    assert twice[0] == once[0] and twice[1] == once[1] and twice[2] == once[2]
    assert twice[3] >= once[3]  # the truth is re-sent for every redelivered event
    # and each redelivery of another partition's component is named once for that
    # partition's owner to judge (the worker classifies it there or forwards it again)
    assert Counter(twice[4]) == Counter(once[2]) and once[4] == []


def _yaml() -> str:
    import yaml

    return str(yaml.safe_dump(CATALOG))


def _partition_of(comp: str) -> int:
    return sum(comp.encode()) % 3


def _partitions_of(comps: Sequence[str]) -> list[int]:
    return [_partition_of(c) for c in comps]


def _normal(decoded: stage1.Decoded, n: int) -> stage1.Decoded:
    cols, index, rejects = decoded
    return cols, list(range(n)) if index is None else index, rejects


@settings(max_examples=200, deadline=None)
@given(values=messages)
def test_split_groups_each_record_once_decoded_as_alone(values: list[bytes]) -> None:
    """Every record lands in exactly one group, in offset order: its component's
    partition, or ``invalid`` if it is no event; and a group's decoding is what
    decoding its records alone gives."""
    from streams.batch import decode

    groups = stage1.split(values, NOW, _partitions_of, invalid=7)
    seen = sorted(i for positions, _ in groups.values() for i in positions)
    assert seen == list(range(len(values)))
    for q, (positions, decoded) in groups.items():
        assert positions == sorted(positions)
        alone = [values[i] for i in positions]
        assert _normal(decoded, len(alone)) == _normal(decode(alone, NOW), len(alone))
        cols, _, rejects = decoded
        assert all(_partition_of(c) == q for c in cols[0])
        if rejects:
            assert q == 7


@settings(max_examples=200, deadline=None)
@given(values=messages, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_split_then_classify_each_partition_is_the_reference(values: list[bytes],
                                                             cuts: list[int]) -> None:
    """An input partition read where it is, as the worker reads one that is not
    co-partitioned with the tables: split, then each partition's group classified
    with the decoding split made. Counts and dead letters are the reference's."""
    catalog = parse_catalog(CATALOG, "test")
    table: dict[str, ComponentTracker] = {}
    counts: Counter[str] = Counter()
    dlq: Counter[Any] = Counter()
    bounds = sorted({0, len(values), *[c % (len(values) + 1) for c in cuts]})
    for lo, hi in pairwise(bounds):
        batch = values[lo:hi]
        for _q, (positions, decoded) in stage1.split(batch, NOW, _partitions_of, 7).items():
            group = [batch[i] for i in positions]
            done = stage1.classify(group, None, NOW, lookup=table.get, catalog=catalog,
                                   allowed_lateness=600.0, fanout={},
                                   unmapped=UnmappedTracker(), decoded=decoded)
            for c in done.created:
                table[c] = done.trackers[c]
            counts.update(done.counts)
            dlq.update((group[i], reason.split(":")[0]) for i, reason in done.dead_letters)
            assert done.away == [] and done.away_again == []
    expected = Expected(_yaml(), values, now=NOW)
    assert {k: counts.get(k, 0) for k in expected.counts} == expected.counts
    assert dlq == expected.dlq

"""Which records of a large fetch stage 1 holds back, so partitions stay together in
event time (agents/worker/alignment.py)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.worker import alignment


def recs(*times: float | None) -> list[float | None]:
    return list(times)


def ident(t: float | None) -> float | None:
    return t


def test_a_partition_is_cut_at_the_time_all_reached() -> None:
    batch = {"behind": recs(*range(50, 100)), "ahead": recs(*range(90, 106))}
    # "behind" reached 99: "ahead" keeps 90..99, the rest waits for its next batch
    assert alignment.cuts(batch, ident, min_records=10) == {"ahead": 10}


def test_a_drift_of_less_than_one_fetch_is_held_too() -> None:
    """Stage 2 would re-evaluate whatever "ahead" ran ahead when "behind" catches up."""
    batch = {"behind": recs(*range(0, 100)), "ahead": recs(*range(0, 200, 2))}
    assert alignment.cuts(batch, ident, min_records=10) == {"ahead": 50}


def test_partitions_that_reached_the_same_time_are_not_held() -> None:
    batch = {"a": recs(*range(0, 100)), "b": recs(*range(50, 100)), "c": recs(0, 99)}
    assert alignment.cuts(batch, ident, min_records=10) == {}


def test_the_partition_that_sets_the_time_is_processed_whole() -> None:
    batch = {"a": recs(5, 1, 2, 3), "b": recs(*range(10, 20))}  # a's last (3) is the min
    cuts = alignment.cuts(batch, ident, min_records=4)
    assert "a" not in cuts


def test_every_partition_keeps_at_least_half() -> None:
    """A partition whose publisher's clock lags by hours cannot stall the others."""
    batch = {"lagging": recs(*range(0, 10)), "live": recs(*range(10_000, 10_101))}
    assert alignment.cuts(batch, ident, min_records=10) == {"live": 51}


@pytest.mark.parametrize("batch", [
    {"a": recs(*range(100)), "b": recs(*range(1000, 1100))},  # small fetch: live traffic
    {"a": recs(*range(10_000))},  # one partition
    {"a": recs(*range(5000)), "b": recs(*(i / 2 for i in range(9999)))},  # together in time
    {"a": recs(None, None), "b": recs(*range(10_000))},  # no readable time in one
])
def test_nothing_is_held(batch: dict[str, list[float | None]]) -> None:
    assert alignment.cuts(batch, ident) == {}


@given(st.dictionaries(st.integers(0, 5), st.lists(st.one_of(st.none(), st.floats(0, 100)),
                                                   min_size=1, max_size=60), max_size=6))
def test_cuts_are_proper_prefixes_of_at_least_half(batch: dict[int, list[float | None]]) -> None:
    for k, n in alignment.cuts(batch, ident, min_records=1).items():
        assert (len(batch[k]) + 1) // 2 <= n < len(batch[k])


@given(st.dictionaries(st.integers(0, 5), st.lists(st.floats(0, 100), min_size=1, max_size=60)
                       .map(sorted), min_size=2, max_size=6))
def test_in_time_order_nothing_processed_is_after_what_all_reached(
        batch: dict[int, list[float]]) -> None:
    """Partitions in event-time order: what is processed now ends at the time every
    partition reached, unless the half every partition keeps reaches further."""
    reached = min(recs[-1] for recs in batch.values())
    for k, n in alignment.cuts(batch, ident, min_records=1).items():
        kept = batch[k][:n]
        assert kept[-1] <= reached or n == (len(batch[k]) + 1) // 2
        assert batch[k][n] > reached


@pytest.mark.parametrize(("raw", "want"), [
    (b'{"component":"a","state":"up","ts":12.5}', 12.5),
    (b'{"component":"a","state":"up","ts":12}', 12.0),
    (b'{"component":"a","state":"up","ts":"2024-03-01T00:00:00Z"}', None),
    (b'{"ts":true}', None),
    (b"[1, 2]", None),
    (b"\xff not json", None),
    (None, None),
])
def test_event_ts(raw: bytes | None, want: float | None) -> None:
    assert alignment.event_ts(raw) == want


def test_event_ts_of_a_real_event() -> None:
    assert alignment.event_ts(orjson.dumps({"component": "x", "state": "down", "ts": 1.7e9})) == 1.7e9

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


def test_a_partition_is_cut_one_fetch_of_the_slowest_after_the_time_all_reached() -> None:
    batch = {"behind": recs(*range(50, 100)), "ahead": recs(*range(90, 200))}
    # "behind" reached 99 and covered 49 s: "ahead" keeps 90..148, the rest is fetched again
    assert alignment.cuts(batch, ident, min_records=10) == {"ahead": 59}


def test_a_drift_within_one_fetch_is_not_held() -> None:
    batch = {"behind": recs(*range(0, 100)), "ahead": recs(*range(0, 200, 2))}
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

"""Which records of a large fetch stage 1 holds back, so partitions stay together in
event time (agents/worker/alignment.py)."""

from __future__ import annotations

import math

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
    batch = {"behind": recs(*range(50, 100)), "ahead": recs(*range(90, 200))}
    # "behind" reached 99: "ahead" hands on 90..99, the rest waits
    assert alignment.cuts(batch, ident, min_records=10) == {"ahead": 10}


def test_a_partition_all_ahead_waits_whole() -> None:
    batch = {"behind": recs(*range(0, 100)), "ahead": recs(*range(100, 300, 2))}
    assert alignment.cuts(batch, ident, min_records=10) == {"ahead": 0}


def test_the_partition_that_sets_the_time_is_processed_whole() -> None:
    batch = {"a": recs(5, 1, 2, 3), "b": recs(*range(10, 20))}  # a's last (3) is the min
    cuts = alignment.cuts(batch, ident, min_records=4)
    assert "a" not in cuts


def test_ripe_records_are_handed_on_whatever_their_time() -> None:
    """A partition whose publisher's clock lags by hours delays the others, never
    stalls them: what was held long enough goes on."""
    batch = {"lagging": recs(*range(0, 10)), "live": recs(*range(10_000, 10_101))}
    assert alignment.cuts(batch, ident, min_records=10) == {"live": 0}
    assert alignment.cuts(batch, ident, min_records=10, ripe={"live": 40}) == {"live": 40}


def test_a_partition_the_fetch_did_not_bring_holds_the_others_at_its_time() -> None:
    batch = {"a": recs(*range(100, 200)), "b": recs(*range(100, 200))}
    assert alignment.cuts(batch, ident, min_records=10, behind={"c": 149.5}) == {"a": 50, "b": 50}
    # never read from yet: everything waits for it
    assert alignment.cuts(batch, ident, min_records=10,
                          behind={"c": -math.inf}) == {"a": 0, "b": 0}
    # one partition alone is held against it as well
    assert alignment.cuts({"a": batch["a"]}, ident, min_records=10,
                          behind={"c": 120}) == {"a": 21}


@pytest.mark.parametrize("batch", [
    {"a": recs(*range(100)), "b": recs(*range(1000, 1100))},  # small fetch: live traffic
    {"a": recs(*range(10_000))},  # one partition
    {"a": recs(*range(5000)), "b": recs(*(i / 2 for i in range(9999)))},  # together in time
    {"a": recs(None, None), "b": recs(*range(10_000))},  # no readable time in one
])
def test_nothing_is_held(batch: dict[str, list[float | None]]) -> None:
    assert alignment.cuts(batch, ident) == {}


def test_a_small_fetch_is_not_held_against_a_partition_it_did_not_bring() -> None:
    """Live traffic is never delayed (latency)."""
    batch = {"a": recs(*range(100, 200))}
    assert alignment.cuts(batch, ident, behind={"c": -math.inf}) == {}


times = st.one_of(st.none(), st.floats(0, 100))


@given(st.dictionaries(st.integers(0, 5), st.lists(times, min_size=1, max_size=60), max_size=6),
       st.dictionaries(st.integers(6, 8), st.one_of(st.just(-math.inf), st.floats(0, 100)),
                       max_size=2),
       st.data())
def test_cuts_hand_on_what_all_reached_and_what_is_ripe(
        batch: dict[int, list[float | None]], behind: dict[int, float], data: st.DataObject) -> None:
    ripe = {k: data.draw(st.integers(0, len(v))) for k, v in batch.items()}
    cut = alignment.cuts(batch, ident, min_records=1, ripe=ripe, behind=behind)
    lasts = [v[-1] for v in batch.values() if v[-1] is not None] + list(behind.values())
    for k, n in cut.items():
        assert ripe[k] <= n < len(batch[k])
        # sorted records: the cut is where the time reached ends (past the ripe ones)
        if batch[k] == sorted(batch[k], key=lambda t: -1 if t is None else t):
            reached = min(lasts)
            assert all(t is None or t <= reached for t in batch[k][ripe[k]:n])
            assert batch[k][n] is not None and batch[k][n] > reached
    for k, v in batch.items():
        if k not in cut and v[-1] is not None and len(lasts) >= 2:
            assert v[-1] <= min(lasts) or ripe[k] == len(v)


def test_the_aligner_remembers_the_time_each_partition_reached() -> None:
    al: alignment.Aligner[str] = alignment.Aligner(["in"], ts_of=ident, min_records=10)
    al.processed("a", recs(*range(0, 30)))
    al.processed("b", recs(0, None))  # no readable time: nothing learnt
    assert al.reached == {"a": 29}
    batch = {"c": recs(*range(20, 60))}
    assert al.cuts(batch, {}, ["a", "b"]) == {"c": 0}  # b never reached anything
    assert al.cuts(batch, {}, ["a"]) == {"c": 10}
    al.forget("a")
    assert al.cuts(batch, {}, ["a"]) == {"c": 0}


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

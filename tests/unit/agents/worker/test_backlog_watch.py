"""``BacklogWatch``: when the worker holds its first scrape's prepare (app.py).

Generated runs of work time (not waiting for records) against wall time: the verdict is
"backlog" exactly when the consumer worked more than ``BACKLOG_SHARE`` of the last interval
of at least a poll, it holds between renewals, and ``restart`` forgets what ran before it.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.worker.app import BACKLOG_SHARE, PREPARE_POLL_SECONDS, BacklogWatch


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.ran = 0.0

    def now(self) -> float:
        return self.t

    def handled(self) -> float:
        return self.ran


steps = st.lists(st.tuples(st.floats(0.0, 2.5), st.floats(0.0, 1.0), st.booleans()),
                 min_size=1, max_size=40)


@given(steps)
def test_the_verdict_is_the_share_of_the_last_interval_of_a_poll(
        run: list[tuple[float, float, bool]]) -> None:
    c = Clock()
    watch = BacklogWatch(c.handled, c.now)
    start, ran0, want = c.t, c.ran, False
    for dt, share, restart in run:
        c.t += dt
        c.ran += share * dt  # it worked this share of the step
        if restart:
            watch.restart()
            start, ran0, want = c.t, c.ran, False
            assert not watch()
            continue
        if c.t - start >= PREPARE_POLL_SECONDS:
            want = c.ran - ran0 > BACKLOG_SHARE * (c.t - start)
            start, ran0 = c.t, c.ran
        assert watch() is want


def test_a_storm_is_a_backlog_and_a_steady_trickle_is_not() -> None:
    c = Clock()
    watch = BacklogWatch(c.handled, c.now)
    assert not watch()  # nothing seen yet
    for _ in range(3):  # handlers busy 80% of the time
        c.t += 1.0
        c.ran += 0.8
        assert watch()
    for _ in range(3):  # 2,000 events/s: a few per cent
        c.t += 1.0
        c.ran += 0.03
        assert not watch()

"""Broker outage: the broker hangs for 30 s (SIGSTOP) and comes back (SIGCONT).

tansu keeps its data in memory only, so a restarted tansu would be an empty cluster
(topics, offsets and changelogs gone): that is a data-loss scenario, not an outage. A
SIGSTOPped broker is what a network partition or a hung broker looks like to the
worker: connections open, nothing answers, the data is still there afterwards. The
worker must stay up (same PID, no restart), answer /healthz throughout, and process
and count new events once the broker is back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import pytest

from tests.fixtures_kafka import ExampleEstate, counted, publish_messages, wait_counted
from tests.reliability_helpers import wait_equal

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE = 30.0


def test_broker_hung_for_30s_worker_survives_and_resumes(example_estate: ExampleEstate,
                                                          worker_factory: Any) -> None:
    broker, catalog = example_estate.broker, example_estate.catalog
    stopped = False
    try:
        messages = example_estate.messages(2000, seed=11)
        before, after = messages[:1000], messages[1000:]
        publish_messages(broker, before)
        worker = worker_factory(broker, catalog)
        wait_counted(worker, len(before), timeout=60)
        pid = worker.pid
        assert broker.pid is not None

        os.kill(broker.pid, signal.SIGSTOP)
        stopped = True
        t0 = time.monotonic()
        health: list[tuple[float, int | str]] = []
        while time.monotonic() - t0 < OUTAGE:
            t = time.monotonic()
            try:
                status, _ = worker.get("/healthz", timeout=2.0)
                health.append((round(t - t0, 1), status))
            except OSError as exc:
                health.append((round(t - t0, 1), type(exc).__name__))
            assert worker.alive(), f"worker died during the outage:\n{worker.log_tail()}"
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
        os.kill(broker.pid, signal.SIGCONT)
        stopped = False
        bad = [h for h in health if h[1] != 200]
        print(f"\n/healthz during the {OUTAGE:.0f} s outage: {len(health) - len(bad)}/{len(health)} "
              f"answered 200; failures {bad[:5]}")
        assert health and not bad, f"/healthz failed during the outage: {bad}"

        # Back: new events are processed by the same process, and counted exactly once.
        t1 = time.monotonic()
        publish_messages(broker, after)
        took = wait_counted(worker, len(messages), timeout=90) - (t1 - worker.started_at)
        engine, _ = example_estate.reference(messages)
        samples = wait_equal([worker], engine, timeout=60)
        assert counted(samples) == len(messages)
        assert worker.alive() and worker.pid == pid and worker.starts == 1
        status, _ = worker.get("/readyz")
        assert status == 200
        print(f"all {len(after)} events published after SIGCONT counted {took:.1f} s later")
    finally:
        if stopped and broker.pid is not None:  # before the fixture stops the broker
            with contextlib.suppress(ProcessLookupError):
                os.kill(broker.pid, signal.SIGCONT)


def test_stop_while_the_broker_is_gone_still_exits(example_estate: ExampleEstate,
                                                   worker_factory: Any) -> None:
    """SIGTERM with the broker dead: the worker exits within its stop deadline.

    Faust's stop waits for the broker (commit, LeaveGroup, flush) and retries forever;
    a supervisor stopping a worker during a Kafka outage must not have to SIGKILL it.
    Exiting loses nothing: what was not committed is delivered again.
    """
    from agents.cli.worker import EXIT_STOP_TIMEOUT, STOP_DEADLINE

    broker = example_estate.broker
    messages = example_estate.messages(500, seed=12)
    publish_messages(broker, messages)
    worker = worker_factory(broker, example_estate.catalog)
    wait_counted(worker, len(messages), timeout=60)
    broker.stop()
    t0 = time.monotonic()
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(timeout=STOP_DEADLINE + 30)
    took = time.monotonic() - t0
    print(f"\nstopped {took:.1f} s after SIGTERM with the broker gone (exit {code})")
    assert code in (0, EXIT_STOP_TIMEOUT), worker.log_tail()
    assert took < STOP_DEADLINE + 10
    if code == EXIT_STOP_TIMEOUT:
        assert "stop did not finish" in worker.log_path.read_text()

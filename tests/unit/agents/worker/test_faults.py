"""Crash points: without a hook a point does nothing; the crash tests' hook kills at
the n-th pass of its point and at no other."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from agents.worker import faults
from tests.support.crashing_worker import crash_at


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: seen.append((pid, sig)))
    yield seen
    faults.install(None)


def test_no_hook_no_effect(kills: list[tuple[int, int]]) -> None:
    for name in ("fetch", "sent", "checkpoint", "recovery"):
        faults.point(name)
    assert kills == []


@pytest.mark.parametrize(("spec", "passes", "at"), [
    ("sent", ["fetch", "sent", "sent"], 2),
    ("fetch:3", ["fetch", "sent", "fetch", "checkpoint", "fetch"], 5),
    ("recovery:2", ["recovery", "fetch"], None),
])
def test_the_hook_kills_at_the_nth_pass(kills: list[tuple[int, int]], spec: str,
                                        passes: list[str], at: int | None) -> None:
    faults.install(crash_at(spec))
    for i, name in enumerate(passes, 1):
        faults.point(name)
        if i == at:
            assert kills == [(os.getpid(), signal.SIGKILL)], (spec, i)
            return
    assert at is None and kills == []

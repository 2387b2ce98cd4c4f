"""The worker's GC thresholds: parsed strictly, applied to the process."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from agents.process import gcpolicy


@pytest.mark.parametrize(("text", "want"), [
    ("50000,10,10", (50_000, 10, 10)),
    (" 700, 10 ,10 ", (700, 10, 10)),
    ("1,0,0", (1, 0, 0)),
])
def test_parse(text: str, want: tuple[int, int, int]) -> None:
    assert gcpolicy.parse(text) == want


@pytest.mark.parametrize(("text", "reason"), [
    ("50000", "three integers"),
    ("1,2,3,4", "three integers"),
    ("a,b,c", "three integers"),
    ("0,10,10", "turn the collector off"),
    ("100,-1,10", ">= 0"),
])
def test_parse_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        gcpolicy.parse(text)


def test_apply_sets_and_returns_the_previous() -> None:
    before = gc.get_threshold()
    try:
        assert gcpolicy.apply((12_345, 7, 3)) == before
        assert gc.get_threshold() == (12_345, 7, 3)
    finally:
        gc.set_threshold(*before)


def test_the_worker_refuses_a_bad_threshold_before_connecting() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli.main", "worker", "--gc-threshold", "0,1,1",
         "--broker", "kafka://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "--gc-threshold" in proc.stderr and "turn the collector off" in proc.stderr

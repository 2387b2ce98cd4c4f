"""The worker's malloc thresholds: a freed 10 MiB block goes back to the system.

Each case runs in a fresh interpreter: glibc's thresholds are per process and move with
what the process has freed before.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from agents.process import mallocpolicy

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

#: Frees a 10 MiB block (which raises glibc's dynamic threshold to 10 MiB), then makes a
#: second one with small blocks allocated after it, frees the block and prints how much
#: of it is still resident (MiB).
PROBE = textwrap.dedent("""
    import os, sys
    from agents.process import mallocpolicy
    if sys.argv[1] == "policy":
        print(mallocpolicy.apply({}), file=sys.stderr)
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page
    n = 10 * 1024 * 1024
    first = b"x" * n
    del first
    second = b"y" * n
    pins = [bytes(2000) + bytes([i % 256]) for i in range(2000)]
    held = rss()
    del second
    print((n - (held - rss())) / 2**20)
""")


def _retained(mode: str) -> float:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                          text=True, timeout=60, check=True)
    return float(proc.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc thresholds; other C libraries have none to set")
def test_a_freed_huge_block_is_returned_with_the_policy() -> None:
    assert _retained("policy") < 2.0


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc thresholds; other C libraries have none to set")
def test_without_the_policy_glibc_keeps_it() -> None:
    """The mechanism the policy exists for: without it the block stays resident."""
    assert _retained("default") > 9.0


def test_the_operator_s_own_tunables_win() -> None:
    said = mallocpolicy.apply({"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert "left to MALLOC_MMAP_THRESHOLD_" in said
    said = mallocpolicy.apply({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"})
    assert "left to GLIBC_TUNABLES" in said


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc thresholds")
def test_apply_reports_the_thresholds_it_set() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from agents.process import mallocpolicy; print(mallocpolicy.apply({}))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "malloc thresholds: mmap 4 MiB, trim 8 MiB"

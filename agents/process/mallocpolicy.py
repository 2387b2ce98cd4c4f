"""The worker's glibc malloc thresholds: a rare huge message must not keep its memory.

Why: glibc serves a block of 128 KiB or more with ``mmap`` and unmaps it on ``free`` --
until the first such block is freed. Then it raises its mmap threshold to that block's
size (up to 32 MiB) and its trim threshold to twice that, so later large blocks come
from the heap, where a freed block stays mapped as long as anything lives above it. One
10 MiB message (fetched, decoded, copied into its DLQ record and into the producer's
batch) left 26-55 MiB of RSS behind for the life of the worker (measured by
``tests/integration/test_reliability_bad_input.py``, whose RSS bound fails without this).
Fixed thresholds keep every block of 4 MiB or more in ``mmap``, so it goes back to the
system when the message is done; what is smaller (fetch responses of a few partitions,
produce batches, table writes) is served from the heap as before. Measured with bench/throughput.py: no change
beyond the run-to-run noise.

glibc's own tunables win: an operator who sets ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` keeps them. On another C library
(musl, macOS) there is nothing to set.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

#: Blocks of this size or more are mmapped and returned on free (glibc's default
#: starts at 128 KiB and rises to the largest freed block, up to 32 MiB).
MMAP_THRESHOLD = 4 * 1024 * 1024
#: Free memory at the heap's top beyond this is returned (twice the mmap threshold,
#: as glibc's own adjustment would set it).
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def apply(env: Mapping[str, str] | None = None) -> str:
    """Fix the thresholds for this process; returns what was done, for the start-up log."""
    env = os.environ if env is None else env
    given = [name for name in _OPERATOR_SETTINGS if name in env]
    if given:
        return f"malloc thresholds left to {', '.join(given)}"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "malloc thresholds: not glibc, left alone"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "malloc thresholds: mallopt not found, left alone"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not (mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        return "malloc thresholds: mallopt refused, left alone"
    return f"malloc thresholds: mmap {MMAP_THRESHOLD >> 20} MiB, trim {TRIM_THRESHOLD >> 20} MiB"

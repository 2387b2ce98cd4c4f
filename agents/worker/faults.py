"""Crash points for the crash tests: ``SLAWATCH_CRASH_AT=point:n`` makes the worker
SIGKILL itself the ``n``-th time it passes ``point``.

The points are the moments between two writes that a crash could separate, so the
tests can place a crash where a timer-based kill would land only by luck:

- ``fetch``: a batch was classified and its sends (segments, re-routed records, DLQ
  records) handed to the producer; nothing of it is checkpointed.
- ``sent``: a checkpoint found every send of its batches delivered (DLQ records are on
  the broker) and has not written the tables yet.
- ``checkpoint``: the counters (``PartitionStats``) were handed to the producer, the
  component trackers not yet.
- ``recovery``: an assignment was recovered and sought, before any record of it is
  processed.

Unset (the default), ``point()`` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_ENV = "SLAWATCH_CRASH_AT"
_target: tuple[str, int] | None = None
_seen: dict[str, int] = {}


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, n = spec.partition(":")
    return name, int(n or 1)


_target = _parse(os.environ.get(_ENV))


def point(name: str) -> None:
    """SIGKILL this process if it is the configured crash point's n-th pass."""
    if _target is None or _target[0] != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)

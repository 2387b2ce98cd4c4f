"""Named crash points: the moments of the worker between two writes that a crash could
separate, so that a test can place a crash exactly there (a timer-based kill lands on
one only by luck).

- ``fetch``: a batch was classified and its sends (segments, re-routed records, DLQ
  records) handed to the producer; nothing of it is checkpointed.
- ``sent``: a checkpoint found every send of its batches delivered (DLQ records are on
  the broker) and has not written the tables yet.
- ``checkpoint``: the counters (``PartitionStats``) were handed to the producer, the
  component trackers not yet.
- ``recovery``: an assignment was recovered and sought, before any record of it is
  processed.

``point(name)`` calls the hook installed with ``install``, if any. Nothing in slawatch
installs one, and no flag or environment variable does: in production a point is one
global read. The crash tests run the worker through ``tests/support/crashing_worker.py``,
which installs a hook that SIGKILLs the process at the n-th pass of a point.
"""

from __future__ import annotations

from collections.abc import Callable

_hook: Callable[[str], None] | None = None


def install(hook: Callable[[str], None] | None) -> None:
    """Call ``hook(name)`` at every crash point from now on (None: no hook)."""
    global _hook
    _hook = hook


def point(name: str) -> None:
    """The worker passes crash point ``name``."""
    hook = _hook
    if hook is not None:
        hook(name)

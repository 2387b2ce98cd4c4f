"""The `slawatch` command with a crash point armed, for the crash tests:

    python -m tests.support.crashing_worker POINT[:N][+forward] worker --broker ...

SIGKILLs the process the ``N``-th time (default 1) it passes the crash point ``POINT``
of ``agents/worker/faults.py``; the rest of the arguments are `slawatch`'s.
``POINT~SECONDS`` instead pauses the process for that long at every pass: a worker
slowed down that much works off a backlog long enough for a rebalance to land in it.
``WorkerProcess(crash_at="POINT:N")`` starts the worker this way.

``+forward``: an input topic that is not co-partitioned with the tables is forwarded
whole through the re-route topic, as a worker of a group does with the records of the
table partitions other workers own; alone, a worker owns every table partition and
classifies every record where it reads it (``agents/worker/routing.py``).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

from agents.cli import main as cli
from agents.worker import faults


def crash_at(spec: str) -> Callable[[str], None]:
    """The hook that kills this process at the ``N``-th pass of ``POINT`` (``spec``)."""
    name, _, n = spec.partition(":")
    times = int(n or 1)
    seen = 0

    def hook(point: str) -> None:
        nonlocal seen
        if point == name:
            seen += 1
            if seen >= times:
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def pause_at(name: str, seconds: float) -> Callable[[str], None]:
    """The hook that blocks this process for ``seconds`` at every pass of ``name``."""

    def hook(point: str) -> None:
        if point == name:
            time.sleep(seconds)

    return hook


def forward_other_counts() -> None:
    """Classify input records where they are read only when the input topic is
    co-partitioned with the tables (``Pipeline._direct``)."""
    from agents.worker.pipeline import Pipeline

    direct = Pipeline._direct

    def copartitioned_only(self: Pipeline, q: int) -> bool:
        return self._copartitioned and direct(self, q)

    Pipeline._direct = copartitioned_only  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    spec, *rest = argv
    spec, plus, mode = spec.partition("+")
    if plus and mode != "forward":
        raise SystemExit(f"crashing_worker: unknown mode {mode!r}")
    if mode == "forward":
        forward_other_counts()
    name, pause, seconds = spec.partition("~")
    faults.install(pause_at(name, float(seconds)) if pause else crash_at(spec))
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The `slawatch` command with a crash point armed, for the crash tests:

    python -m tests.support.crashing_worker POINT[:N] worker --broker ...

SIGKILLs the process the ``N``-th time (default 1) it passes the crash point ``POINT``
of ``agents/worker/faults.py``; the rest of the arguments are `slawatch`'s.
``WorkerProcess(crash_at="POINT:N")`` starts the worker this way.
"""

from __future__ import annotations

import os
import signal
import sys
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


def main(argv: list[str]) -> int:
    spec, *rest = argv
    faults.install(crash_at(spec))
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

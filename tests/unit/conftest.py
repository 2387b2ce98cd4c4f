"""Unit tests start no process: a test here that tries fails at once, so that
``make test-fast`` keeps its promise."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

# croniter (imported by Faust's ``mode``) runs ``file`` through platform.architecture()
# once, at import: that is the library loading, not the test starting a process, so it
# happens here, before the guard, whichever unit test imports Faust first.
import mode.utils.cron  # noqa: F401
import pytest


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise AssertionError("a unit test started a process: move it to tests/integration")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    yield

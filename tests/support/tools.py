"""System tools the e2e tests drive (promtool, prometheus, alertmanager, chromium, ...)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, package: str) -> str:
    """Path of a system tool; fail (or skip with SLAWATCH_ALLOW_MISSING_TOOLS=1) if missing.

    ``make test`` installs every one of them (scripts/install-system-deps), so a missing
    tool is a broken setup, not a reason to pass quietly.
    """
    path = shutil.which(name)
    if path:
        return path
    msg = (
        f"`{name}` not found: install Debian's `{package}` (scripts/install-system-deps does); "
        "set SLAWATCH_ALLOW_MISSING_TOOLS=1 to skip instead"
    )
    if os.environ.get("SLAWATCH_ALLOW_MISSING_TOOLS") == "1":
        pytest.skip(msg)
    pytest.fail(msg)

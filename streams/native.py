"""The C twins of the engine's two hot loops, when they are built (``_native.c``).

Why a switch: the pure-Python loops are the reference and the fallback (a platform
without a C compiler installs without the extension, and runs the same numbers,
slower). ``SLAWATCH_NATIVE=0`` turns the C loops off, for a comparison or to rule them
out when something looks wrong; the tests run the engine properties both ways.
"""

from __future__ import annotations

import os
from types import ModuleType

from streams.timeline import NO_TAG, Timeline

_OFF = ("0", "false", "no", "off")


def _load() -> ModuleType | None:
    if os.environ.get("SLAWATCH_NATIVE", "1").strip().lower() in _OFF:
        return None
    try:
        from streams import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    module: ModuleType = _native
    module.setup(Timeline, NO_TAG)
    return module


#: The extension module, or None when it is not built or turned off.
native: ModuleType | None = _load()


def describe() -> str:
    """For the worker's start-up line: which loops run, and why."""
    if native is not None:
        return "engine loops: C (streams._native)"
    if os.environ.get("SLAWATCH_NATIVE", "1").strip().lower() in _OFF:
        return "engine loops: pure Python (SLAWATCH_NATIVE=0)"
    return "engine loops: pure Python (the C extension is not built)"

"""The versions each patch in this package was checked against, and the guard.

A patch of a library's internals is only known to be right for the versions it was
read and tested against. A worker started with another version refuses to start
(naming the library, the version and the patch module) instead of running a patch
whose target may have changed meaning; ``SLAWATCH_ALLOW_UNTESTED_DEPS=1`` starts it
anyway, with a warning, for whoever re-checks a new release.
"""

from __future__ import annotations

import logging
import os
import re
from importlib import metadata

log = logging.getLogger("slawatch.transport")

#: distribution -> (lowest tested version, first version not tested); pyproject.toml
#: pins the same ranges.
TESTED: dict[str, tuple[str, str]] = {
    "faust-streaming": ("0.15.3", "0.16"),
    "aiokafka": ("0.14.0", "0.15"),
    "kafka-python": ("3.0.0", "3.1"),
}


class UntestedVersion(RuntimeError):
    """An installed library is outside the range a patch was checked against."""


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0])[:4])


def installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def in_tested_range(dist: str, version: str) -> bool:
    lo, hi = TESTED[dist]
    return _key(lo) <= _key(version) < _key(hi)


def require(dist: str, patch_module: str) -> None:
    """Raise ``UntestedVersion`` unless ``dist`` is in its tested range."""
    version = installed(dist)
    if version is None or in_tested_range(dist, version):
        return
    lo, hi = TESTED[dist]
    msg = (f"{dist} {version} is outside the range {lo} <= v < {hi} that the patches in "
           f"{patch_module} were checked against; install a tested version (pyproject.toml "
           f"pins it) or re-check the patches and widen TESTED in agents/transport/versions.py")
    if os.environ.get("SLAWATCH_ALLOW_UNTESTED_DEPS") == "1":
        log.warning("%s (started anyway: SLAWATCH_ALLOW_UNTESTED_DEPS=1)", msg)
        return
    raise UntestedVersion(msg)

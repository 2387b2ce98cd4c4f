"""Durations as the catalog writes them: ``<n>s|m|h|d``."""

from __future__ import annotations

import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: object) -> float:
    """Seconds in a duration such as ``30m``; raises ValueError naming the bad text.

    Bare numbers are refused: ``30`` could mean seconds or minutes, and a silent
    guess in an SLA period is the kind of mistake nobody notices until the report.
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration (expected e.g. 30m, 2h, 30d)")
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration (expected <n>s|m|h|d, e.g. 30m)")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact ``<n><unit>`` spelling, for tables and labels."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"

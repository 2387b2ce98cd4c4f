"""SLA arithmetic of CONTRACT §3, on plain numbers so it can be read against the text."""

from __future__ import annotations

import math
from collections.abc import Mapping

from streams.windows import ALERT_PAIRS, WINDOWS

MEETING, TRENDING, BREACHED = 0, 1, 2


def availability(up: float, down: float) -> float:
    """up / (up + down); maintenance counts in neither; 1 when nothing was measured."""
    total = up + down
    return 1.0 if total <= 0 else up / total


def burn_rate(avail: float, target: float) -> float:
    return (1.0 - avail) / (1.0 - target)


def budget_remaining(sla_availability: float, target: float) -> float:
    """Share of the error budget left; negative once the SLA is breached."""
    return 1.0 - (1.0 - sla_availability) / (1.0 - target)


def exhaustion_seconds(up: float, down: float, target: float, availability_1h: float) -> float:
    """Seconds until the budget is gone if the last hour's downtime rate goes on."""
    remaining = (1.0 - target) * (up + down) - down
    if remaining <= 0:
        return 0.0
    rate = 1.0 - availability_1h
    if rate <= 0:
        return math.inf
    return remaining / rate


def burn_factor(fraction: float, period_seconds: float, long_window: str) -> float:
    return fraction * period_seconds / WINDOWS[long_window]


def trending_below(burn: Mapping[str, float], period_seconds: float, breached: bool) -> bool:
    """Not yet breached, and some long/short pair both burn faster than its factor."""
    if breached:
        return False
    for long_w, short_w, fraction in ALERT_PAIRS:
        factor = burn_factor(fraction, period_seconds, long_w)
        if burn[long_w] > factor and burn[short_w] > factor:
            return True
    return False


def status(breached: bool, trending: bool) -> int:
    return BREACHED if breached else TRENDING if trending else MEETING

"""Window sizes and SLA periods; pure functions of ``now`` (faust's windows.py spirit)."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.calendars import zone
from streams.catalog import Period

#: The `window` label values of CONTRACT §4, in seconds.
WINDOWS: dict[str, float] = {
    "5m": 300.0,
    "30m": 1800.0,
    "1h": 3600.0,
    "6h": 21600.0,
    "1d": 86400.0,
    "3d": 259200.0,
    "7d": 604800.0,
    "30d": 2592000.0,
}

#: SRE-workbook multi-window burn-rate pairs: (long, short, budget fraction).
ALERT_PAIRS: tuple[tuple[str, str, float], ...] = (
    ("1h", "5m", 0.02),
    ("6h", "30m", 0.05),
    ("3d", "6h", 0.10),
)

#: History older than this is never read: the longest window or a 31-day month, plus
#: a day of slack so a window never ends up reading a pruned part.
RETENTION_SECONDS = 32 * 86400.0


def month_bounds(now: float, timezone: str | None = None) -> tuple[float, float]:
    """Start of the current calendar month (UTC, or in the IANA zone ``timezone``) and
    the month's length in seconds (a month with a DST change is an hour off)."""
    tz = UTC if timezone is None else zone(timezone)
    d = datetime.fromtimestamp(now, tz)
    start = datetime(d.year, d.month, 1, tzinfo=tz)
    nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=tz)
    return start.timestamp(), nxt.timestamp() - start.timestamp()


def period_bounds(period: Period, now: float) -> tuple[float, float]:
    """(start of the SLA window ending at ``now``, the period's length for burn factors);
    a calendar month runs in the period's zone (the service time's, CONTRACT §6)."""
    if period.calendar_month:
        return month_bounds(now, period.timezone)
    assert period.seconds is not None
    return now - period.seconds, period.seconds


def retention_for(periods: list[Period]) -> float:
    longest = max([RETENTION_SECONDS, *((p.seconds or 0.0) + 86400.0 for p in periods)])
    return longest

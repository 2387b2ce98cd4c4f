"""Stage 2 of the pipeline as one domain call: a service's segments of a fetch in, its
tracker out. The worker's agent only reads the segment messages, groups them by
service, and stores the tracker returned."""

from __future__ import annotations

from collections.abc import Sequence

from streams.catalog import Catalog
from streams.service import ServiceTracker


def apply(tracker: ServiceTracker | None, name: str, comps: Sequence[str],
          starts: Sequence[float], ends: Sequence[float] | None, states: Sequence[int],
          catalog: Catalog) -> ServiceTracker | None:
    """Apply one service's segments (from any number of stage-1 partitions, each in its
    own time order) to its tracker, a new one if ``tracker`` is None; None when the
    service has left the catalog since the segments were sent.

    The segments are merged by start time first, keeping each component's own order (a
    component's later segment overrides its earlier one, so that order must not change;
    the result does not depend on the order across components), so the tracker
    re-evaluates at most once, from the first segment that lands in its past.
    """
    model = catalog.models.get(name)
    if model is None:
        return None
    if tracker is None:
        tracker = ServiceTracker(name)
    tracker.apply_columns(comps, starts, ends, states, model)
    return tracker

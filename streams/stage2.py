"""Stage 2 of the pipeline as one domain call: the services' segments of a fetch in,
their trackers out. The worker's agent only reads the segment messages, groups them by
service, and stores the trackers changed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from streams import native
from streams.catalog import Catalog
from streams.service import ServiceTracker

#: One service's segments as columns: ``(comps, starts, ends, states)``, ``ends`` None
#: when all are open-ended (what ``ServiceTracker.apply_columns`` takes).
SegmentColumns: TypeAlias = tuple[list[str], Sequence[float], Sequence[float] | None, bytes]


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


@dataclass(slots=True)
class Applied:
    """What ``apply_all`` did besides changing the trackers."""

    #: the services whose trackers it made (and added to ``trackers``), in that order
    created: list[str] = field(default_factory=list)
    #: the services that left the catalog since their segments were sent (dropped)
    gone: list[str] = field(default_factory=list)


def apply_all(items: Sequence[tuple[str, SegmentColumns]], trackers: dict[str, ServiceTracker],
              catalog: Catalog) -> Applied:
    """``apply`` of each ``(name, columns)`` in turn, with the tracker ``trackers[name]``
    (a new one made and added there when it has none). One call a slice of a fetch's
    services: the loop runs in C (``_native.apply_services``, the same steps) when it
    can, where a few Python calls around each service's segments cost a third of stage 2
    at 20,000 components."""
    done = Applied()
    fast = native.native
    if fast is not None and type(items) is list and type(trackers) is dict \
            and isinstance(catalog.models, dict):
        fast.apply_services(items, trackers, catalog.models, ServiceTracker, done.created,
                            done.gone)
        return done
    for name, cols in items:
        before = trackers.get(name)
        tracker = apply(before, name, *cols, catalog)
        if tracker is None:
            done.gone.append(name)
        elif before is None:
            trackers[name] = tracker
            done.created.append(name)
    return done

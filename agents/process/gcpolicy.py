"""The worker's garbage-collector thresholds.

Why: CPython starts a young collection every 700 new containers. A worker makes a
segment tuple, list entries and Faust/aiokafka records for every event, so in a batch of
thousands of events it collects every few microseconds of work, and the survivors move
up until a full collection walks every tracker's lists. Almost nothing here forms
reference cycles (reference counting frees it), so collecting less often costs no
memory. Measured with bench/engine.py (1,000,000 events, 10,000 components, 2,000
services; quiet runs in separate processes): 155-187k -> 199-220k events/s, the first
report 0.73-0.98 -> 0.43-0.51 s, peak RSS unchanged. No measurable change in the
400-component storm of bench/throughput.py, whose heap is small.

What a worker builds before it starts (the modules, Faust's app, the catalog: at 20,000
components some 200,000 GC objects) lives as long as the process, and every full
collection walked it again: ``freeze`` moves it out of the collector's sight once. Only
a catalog reload drops part of it (the old catalog, whose models refer back to it, a
cycle), so a reload ``thaw``s it: the next full collection frees the old catalog.

While the worker handles a fetch the collector waits (``paused``). A collection walks
every container made since the last one that is still alive, and everything those
hold: in the middle of a fetch that is the fetch's records, its columns and its
segments lists, tens of thousands of objects each read from memory, so a young
collection took 5-48 ms at a fan-out of 5 (about 10% of the worker's CPU in a storm, by
perf) and a fetch set off several. Once the fetch is handled its temporaries are freed
by reference counting, and the one collection its allocations call for walks only what
it kept.
"""

from __future__ import annotations

import gc
from types import TracebackType

#: ``gc.set_threshold`` arguments of a worker (CPython's default is 700, 10, 10).
DEFAULT = (50_000, 10, 10)


def parse(text: str) -> tuple[int, int, int]:
    """``"50000,10,10"`` -> thresholds; ValueError with the reason otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ValueError(f"{text!r}: expected three integers like 50000,10,10")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r}: expected three integers like 50000,10,10") from None
    if any(v < 0 for v in values) or values[0] == 0:
        raise ValueError(f"{text!r}: the thresholds must be >= 0 and the first > 0 "
                         "(0 would turn the collector off)")
    return values[0], values[1], values[2]


def apply(thresholds: tuple[int, int, int] = DEFAULT) -> tuple[int, int, int]:
    """Set the collector's thresholds for this process; returns the previous ones."""
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    return before


def freeze() -> int:
    """Collect, then move every object left to the permanent generation, which no
    collection walks (``gc.freeze``): for the long-lived objects made at start-up.
    Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw() -> None:
    """Give the frozen objects back to the collector (``gc.unfreeze``): before some of
    them become garbage that only the cyclic collector can free."""
    gc.unfreeze()


class Paused:
    """``with paused:`` keeps the cyclic collector off for the block (nested and
    interleaved blocks too; it comes back on when the last one ends, if it was on
    before the first). Allocations made meanwhile still count: the first one after the
    block starts the collection they called for."""

    def __init__(self) -> None:
        self._depth = 0
        self._disabled = False

    def __enter__(self) -> None:
        if self._depth == 0 and gc.isenabled():
            gc.disable()
            self._disabled = True
        self._depth += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0 and self._disabled:
            self._disabled = False
            gc.enable()


#: The worker's pause (``agents/worker/batching.py`` holds it while a fetch is handled).
paused = Paused()

"""Stage 2 reads every form of segments message it may find on the topic.

Stage 1 sends one message per segments partition holding many services
(``segwire.encode_many``); a topic written before that holds one message per service,
keyed by its name, binary (``segwire.encode``) or JSON. Whatever the mix, and however
the messages of a fetch are cut, every service tracker must end as if its segments had
been applied one by one in the order sent.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.settings import WorkerSettings
from agents.worker import segwire
from agents.worker.pipeline import Pipeline
from streams.catalog import Catalog, parse_catalog
from streams.component import ComponentTracker
from streams.events import ComponentEvent
from streams.service import ServiceTracker
from streams.states import State
from tests.fake_tables import FakeRuntime, PipelineTopics, Table

#: Every test here runs on the C loops and on the Python ones.
pytestmark = pytest.mark.usefixtures("engine_path")

T0 = 1_700_000_000.0
COMPS = ["a", "b", "c", "d"]


def _catalog() -> Catalog:
    services = {
        "one": ["a"],
        "two": [{"any": ["a", "b"]}],
        "three": [{"at_least": 2, "of": ["b", "c", "d"]}],
        "all\nof them": ["a", "b", "c", "d"],  # a name with a newline in it
    }
    return parse_catalog(orjson.loads(orjson.dumps({
        "components": {c: {"team": "t"} for c in COMPS},
        "services": {name: {"kind": "internal", "customers": ["x"],
                            "sla": {"target": 0.99, "period": "30d"}, "requires": req}
                     for name, req in services.items()},
    })), "test")


@dataclass
class _TP:
    topic: str
    partition: int

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


async def _send(*args: Any) -> Any:
    raise AssertionError("stage 2 sends nothing")


Seg = tuple[str, float, float, int]
#: component events (component, state, ts) in arrival order: any order within the
#: lateness, repeats and duplicates included
_events = st.lists(st.tuples(st.sampled_from(COMPS), st.sampled_from([State.UP, State.DOWN,
                                                                      State.MAINTENANCE]),
                             st.integers(0, 40).map(lambda k: T0 + 10.0 * k)),
                   min_size=1, max_size=40)


def _stream(events: list[tuple[str, State, float]]) -> list[Seg]:
    """The segments stage 1 sends for ``events``, in order (as the component trackers
    make them)."""
    trackers: dict[str, ComponentTracker] = {}
    out: list[Seg] = []
    for comp, state, ts in events:
        tracker = trackers.setdefault(comp, ComponentTracker(comp))
        _, seg = tracker.apply(ComponentEvent(comp, state, ts), 600.0)
        if seg is not None:
            out.append((seg.component, seg.start, seg.end, int(seg.state)))
    return out


def _messages(catalog: Catalog, stream: list[Seg], cuts: list[int], forms: list[str]
              ) -> list[tuple[str, list[tuple[str, list[Seg]]]]]:
    """``stream`` cut into messages at ``cuts``, each in one of ``forms`` (in turn): each
    message holds every service's segments of its piece, in order."""
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    out = []
    for k, (lo, hi) in enumerate(pairwise(bounds)):
        shares = [(name, [seg for seg in stream[lo:hi] if seg[0] in catalog.components_of(name)])
                  for name in catalog.services]
        shares = [(name, segs) for name, segs in shares if segs]
        if shares:
            out.append((forms[k % len(forms)], shares))
    return out


def _records(messages: list[tuple[str, list[tuple[str, list[Seg]]]]], max_bytes: int) -> list[_Record]:
    out: list[_Record] = []
    for form, shares in messages:
        if form == "many":
            values = [(None, v) for v in segwire.encode_many(shares, max_bytes)]
        elif form == "one":
            values = [(name.encode(), segwire.encode(segs)) for name, segs in shares]
        else:
            values = [(name.encode(), orjson.dumps([[c, s, None if e == math.inf else e, x]
                                                    for c, s, e, x in segs]))
                      for name, segs in shares]
        for key, value in values:
            out.append(_Record("segments", 0, len(out), key, value))
    return out


@settings(deadline=None, max_examples=80)
@given(events=_events, cuts=st.lists(st.integers(0, 40), max_size=6),
       forms=st.lists(st.sampled_from(["many", "one", "json"]), min_size=1, max_size=4),
       fetch=st.integers(1, 8), max_bytes=st.sampled_from([60, 400, 1 << 18]))
def test_stage2_applies_every_form_as_sent(events: list[tuple[str, State, float]], cuts: list[int],
                                           forms: list[str], fetch: int, max_bytes: int) -> None:
    catalog = _catalog()
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(), Table())
    pipeline = Pipeline(rt, PipelineTopics(), _send)
    messages = _messages(catalog, _stream(events), cuts, forms)
    records = _records(messages, max_bytes)
    tp = _TP("segments", 0)

    async def run() -> None:
        for lo in range(0, len(records), fetch):
            await pipeline.stage2({tp: records[lo:lo + fetch]})

    asyncio.run(run())
    want: dict[str, ServiceTracker] = {}
    for _, shares in messages:
        for name, segs in shares:
            tracker = want.setdefault(name, ServiceTracker(name))
            for seg in segs:
                tracker.apply(seg, catalog.models[name])
    for name, tracker in want.items():
        got = rt.services.get(name)
        assert got is not None, name
        assert got.to_obj() == tracker.to_obj(), name
    assert {n for n in catalog.services if rt.services.get(n) is not None} == set(want)


def test_a_damaged_message_is_skipped_and_the_rest_applied() -> None:
    catalog = _catalog()
    rt = FakeRuntime(WorkerSettings(), catalog)
    rt.bind_tables(Table(), Table())
    pipeline = Pipeline(rt, PipelineTopics(), _send)
    good = segwire.encode_many([("one", [("a", T0, math.inf, 2)])])[0]
    records = [_Record("segments", 0, 0, None, good[:-3]), _Record("segments", 0, 1, None, good)]
    asyncio.run(pipeline.stage2({_TP("segments", 0): records}))
    got = rt.services.get("one")
    assert got is not None and got.state_at(T0 + 1) == 2

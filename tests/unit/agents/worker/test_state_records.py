"""Trackers are stored as binary records (streams/record.py), and old JSON values still load.

A record is what a restarted worker rebuilds every tracker from, so a tracker must
come back equal, point for point and tag for tag, from any engine state; a value
written by an older release (the JSON of ``to_obj``) must load to the same tracker;
and a damaged record must be refused with a message naming the table, not decoded
into a wrong history.
"""

from __future__ import annotations

import math
from array import array

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.worker.state import decode_component, decode_service, encode_component, encode_service
from streams import record
from streams.component import ComponentTracker
from streams.service import ServiceTracker
from tests.strategies import apply_all, build_engine, scenarios


@settings(max_examples=60, deadline=None)
@given(sc=scenarios(allow_unknown=False), data=st.data())
def test_every_tracker_comes_back_equal(sc: object, data: st.DataObject) -> None:
    engine = build_engine(sc.catalog)  # type: ignore[attr-defined]
    events = sc.events  # type: ignore[attr-defined]
    apply_all(engine, events[: data.draw(st.integers(0, len(events)), label="applied")])
    for tr in engine.components.values():
        raw = encode_component(tr)
        assert record.is_record(raw)
        back = decode_component(raw)
        assert back.to_obj() == tr.to_obj()
        assert type(back.history.ts) is array and back.history.ts.typecode == "d"
        # an older release's value: the same tracker
        assert decode_component(orjson.dumps(tr.to_obj())).to_obj() == tr.to_obj()
    for tr in engine.services.values():
        raw = encode_service(tr)
        back = decode_service(raw)
        assert back.to_obj() == tr.to_obj()
        assert (back.pruned_outages, back.pruned_downtime, back.whole_from, back.frontier) == (
            tr.pruned_outages, tr.pruned_downtime, tr.whole_from, tr.frontier)
        assert decode_service(orjson.dumps(tr.to_obj())).to_obj() == tr.to_obj()
        assert raw == _as_lists(tr)  # the bytes the previous release wrote
        # each tag is in the table once, and every point's index is in it
        table = back.timeline.tags
        assert len(set(table)) == len(table)
        assert set(back.timeline.tag) <= set(range(len(table)))
        # after any prune, even one that drops no point, only tags a point uses are left
        tr.timeline.prune_before(tr.timeline.ts[len(tr.timeline) // 2]
                                 if len(tr.timeline) else 0.0)
        assert set(tr.timeline.tag) | {0} == set(range(len(tr.timeline.tags)))


class _ListPacker(record.Packer):
    """The tag tables as lists of lists, as ``Packer`` built them before it handed
    orjson the tuples."""

    def tag_table(self, meta: dict[str, object], owner: object) -> None:
        meta["g"] = [list(t) for t in owner.tags[1:]]  # type: ignore[attr-defined]


def _as_lists(tr: ServiceTracker) -> bytes:
    out = _ListPacker()
    return out.encode(tr.to_record(out))


def test_edge_values_round_trip() -> None:
    svc = ServiceTracker("s")
    svc.timeline.append_state(1.5, 2, ("a", "b"))
    svc.timeline.append_state(2.5, 1)
    svc.timeline.append_state(3.5, 2, ("b",))
    svc.components["a"] = svc.components.get("a") or type(svc.timeline)()
    svc.components["a"].append_state(-1e300, 2)
    svc.components["e"] = type(svc.timeline)()  # empty copy
    svc.pruned_outages, svc.pruned_downtime, svc.whole_from = 3, 12.25, 0.5
    back = decode_service(encode_service(svc))
    assert back.to_obj() == svc.to_obj()
    assert back.timeline.tag_list() == [("a", "b"), (), ("b",)]
    comp = ComponentTracker("c")
    assert decode_component(encode_component(comp)).newest == -math.inf


@pytest.mark.parametrize("cut", [1, 10, 20, -1, -9])
def test_a_damaged_record_is_refused_by_name(cut: int) -> None:
    svc = ServiceTracker("s")
    for i in range(5):
        svc.timeline.append_state(float(i), 2 * (i % 2), ("x",) if i % 2 else ())
    raw = encode_service(svc)
    with pytest.raises(ValueError, match=r"services table value|service 's'"):
        decode_service(raw[:cut])


def test_a_tag_index_out_of_its_table_is_refused() -> None:
    svc = ServiceTracker("s")
    svc.timeline.append_state(1.0, 2, ("x",))
    out = record.Packer()
    header = svc.to_record(out)
    header["t"]["g"] = []  # the table lost its entry: index 1 points past it
    with pytest.raises(ValueError, match="tag index"):
        decode_service(out.encode(header))

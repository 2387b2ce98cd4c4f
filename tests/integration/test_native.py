"""The C loops (``streams/_native.c``) where the property suites do not reach.

The engine suites run on both paths (``conftest.engine_path``) with catalogs of a few
components; here: services reading more than 64 components (their masks do not fit a
machine word, so the C loop keeps Python ints and calls the model's Python function),
batches of the size a worker gets, and the switch that turns the C loops off.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

import orjson
import pytest

from streams import native
from streams.catalog import parse_catalog
from streams.engine import Engine
from tests.strategies import diff_engine_reports

NOW = 1_709_251_200.0
LATENESS = 600.0


def _catalog(n: int) -> dict[str, Any]:
    comps = [f"node-{i:03d}" for i in range(n)]
    return {
        "components": {c: {} for c in comps},
        "services": {
            # 2 of the first 70 may be down: masks of 70 bits
            "wide": {"kind": "external", "sla": {"target": 0.999, "period": "30d"},
                     "requires": [{"at_least": 68, "of": comps[:70]}, comps[70]]},
            # every component, some redundancy: 90 bits, nested, on a service too
            "all": {"kind": "internal", "sla": {"target": 0.99, "period": "month"},
                    "requires": [{"any": comps[:3]}, {"service": "small"},
                                 *comps[3:70], {"at_least": 2, "of": comps[70:]}]},
            "small": {"kind": "external", "sla": {"target": 0.99, "period": "7d"},
                      "requires": [{"any": comps[85:88]}, comps[88]]},
        },
    }


def _stream(n: int, comps: list[str], rng: random.Random) -> list[bytes]:
    """Mostly in time order, a tenth delayed within the lateness, some duplicates and
    some beyond it (late): the shapes a worker sees."""
    out: list[tuple[float, bytes]] = []
    t = NOW - 86400.0
    for i in range(n):
        t += rng.expovariate(1 / 20.0)
        state = rng.choice(("up", "up", "down", "maintenance"))
        raw = orjson.dumps({"component": rng.choice(comps), "state": state, "ts": round(t, 3),
                            "id": f"e{i}"})
        arrive = t + (rng.uniform(0, LATENESS * 8) if rng.random() < 0.1 else 0.0)
        out.append((arrive, raw))
        if rng.random() < 0.02:
            out.append((arrive + 1.0, raw))
    out.sort(key=lambda p: p[0])
    return [raw for _, raw in out]


def _state(engine: Engine) -> Any:
    dump = lambda t: orjson.dumps(t.to_obj(), option=orjson.OPT_SORT_KEYS)  # noqa: E731
    return ({c: dump(t) for c, t in engine.components.items()},
            {s: dump(t) for s, t in engine.services.items()}, dict(engine.counts))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch", [1, 37, 4096])
def test_wide_services_give_the_same_numbers_on_both_paths(seed: int, batch: int) -> None:
    fast = native.native
    if fast is None:
        pytest.fail("the C extension is not built: run `make .venv/.installed`")
    data = _catalog(90)
    catalog = parse_catalog(data, "wide")
    assert catalog.models["wide"].program is None  # 71 components: the Python-int path
    assert catalog.models["small"].program is not None
    raws = _stream(3000, list(data["components"]), random.Random(seed))
    engines: dict[str, Engine] = {}
    outcomes: dict[str, list[Any]] = {}
    # "c-generic": the C loops through array.append and the buffer protocol, not the
    # arrays' memory in place (what a Python whose array layout differs would run)
    assert fast.array_fast(), "the C loops do not append to the arrays in place here"
    for path in ("c", "c-generic", "python"):
        native.native = None if path == "python" else fast
        fast.array_fast(path == "c")
        try:
            engine = engines[path] = Engine(catalog, allowed_lateness=LATENESS)
            got: list[Any] = []
            for i in range(0, len(raws), batch):
                got += engine.apply_raw_many(raws[i:i + batch], NOW)
            outcomes[path] = got
        finally:
            native.native = fast
            fast.array_fast(True)
    c, py = engines["c"], engines["python"]
    assert outcomes["c"] == outcomes["python"] == outcomes["c-generic"]
    assert _state(engines["c-generic"]) == _state(c)
    assert {o for o, _ in outcomes["c"]} >= {"accepted", "duplicate", "late"}
    assert _state(c) == _state(py)
    assert not diff_engine_reports(c.report(NOW), py.report(NOW))
    # and something happened to the wide services: outages were seen and blamed
    assert c.report(NOW).services["all"].outages_total > 0


def _loops_in_subprocess(env: dict[str, str]) -> str:
    code = "from streams import native; print(native.describe())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def test_the_switch_turns_the_c_loops_off() -> None:
    assert _loops_in_subprocess({"SLAWATCH_NATIVE": "1"}) == "engine loops: C (streams._native)"
    assert _loops_in_subprocess({"SLAWATCH_NATIVE": "0"}) == "engine loops: pure Python (SLAWATCH_NATIVE=0)"

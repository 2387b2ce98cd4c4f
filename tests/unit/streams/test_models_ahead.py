"""A worker builds every service model at start (``Catalog.build_models``) for catalogs
of at most ``MODELS_AHEAD_MAX`` services; a model built ahead must evaluate exactly as
one built at first use: the same engine numbers over generated catalogs and streams,
on the C loops and the pure-Python ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from streams.catalog import parse_catalog
from streams.engine import Engine
from tests.strategies import ENGINE_SETTINGS, Scenario, diff_engine_reports, scenarios, to_event

pytestmark = pytest.mark.usefixtures("engine_path")


@settings(ENGINE_SETTINGS)
@given(scenarios())
def test_models_built_ahead_give_the_numbers_of_models_built_at_first_use(sc: Scenario) -> None:
    ahead = parse_catalog(sc.catalog, "ahead.yaml")
    assert ahead.build_models() == len(ahead.services)
    assert set(ahead.models) == set(ahead.services)
    engines = [Engine(ahead, allowed_lateness=600.0),
               Engine(parse_catalog(sc.catalog, "lazy.yaml"), allowed_lateness=600.0)]
    for engine in engines:
        for e in sc.events:
            engine.apply(to_event(e))
    assert diff_engine_reports(engines[0].report(sc.now), engines[1].report(sc.now)) == []

"""A catalog written as JSON (which is YAML too) loads through orjson, with the same result."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from streams.catalog import CatalogError, load_catalog

ROOT = Path(__file__).resolve().parents[3]


def test_json_catalog_equals_its_yaml(tmp_path: Path) -> None:
    example = ROOT / "config" / "services.yaml"
    as_json = tmp_path / "services.json"
    as_json.write_text(orjson.dumps(yaml.safe_load(example.read_text())).decode())
    a, b = load_catalog(example), load_catalog(as_json)
    assert a.services == b.services
    assert a.components == b.components
    assert {c: a.services_for(c) for c in a.components} == {c: b.services_for(c) for c in b.components}


def test_flow_yaml_that_is_not_json_still_loads(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("{components: {a: {kpi: 0.99}}, services: {s: {kind: internal, customers: [x],"
                 " sla: {target: 0.99, period: 30d}, requires: [a]}}}")
    assert set(load_catalog(p).services) == {"s"}


def test_broken_braces_get_the_yaml_error(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text('{"components": {"a": {}}, "services": ')
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(p)

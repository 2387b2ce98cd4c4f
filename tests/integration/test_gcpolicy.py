"""The worker's GC thresholds: parsed strictly, applied to the process."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from agents.process import gcpolicy


@pytest.mark.parametrize(("text", "want"), [
    ("50000,10,10", (50_000, 10, 10)),
    (" 700, 10 ,10 ", (700, 10, 10)),
    ("1,0,0", (1, 0, 0)),
])
def test_parse(text: str, want: tuple[int, int, int]) -> None:
    assert gcpolicy.parse(text) == want


@pytest.mark.parametrize(("text", "reason"), [
    ("50000", "three integers"),
    ("1,2,3,4", "three integers"),
    ("a,b,c", "three integers"),
    ("0,10,10", "turn the collector off"),
    ("100,-1,10", ">= 0"),
])
def test_parse_refuses(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        gcpolicy.parse(text)


def test_apply_sets_and_returns_the_previous() -> None:
    before = gc.get_threshold()
    try:
        assert gcpolicy.apply((12_345, 7, 3)) == before
        assert gc.get_threshold() == (12_345, 7, 3)
    finally:
        gc.set_threshold(*before)


def test_the_worker_refuses_a_bad_threshold_before_connecting() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agents.cli.main", "worker", "--gc-threshold", "0,1,1",
         "--broker", "kafka://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "--gc-threshold" in proc.stderr and "turn the collector off" in proc.stderr


def test_paused_holds_collections_until_the_last_block_ends() -> None:
    """No collection runs inside a pause, however many containers are made; the first
    allocation after it collects what was left (a cycle made inside is freed then)."""
    class Node:
        pass

    before = gc.get_threshold()
    gc.set_threshold(100, 10, 10)
    runs: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with gcpolicy.paused:
            cyc = Node()
            cyc.self = cyc  # type: ignore[attr-defined]
            ref = weakref.ref(cyc)
            del cyc
            with gcpolicy.paused:  # nested: the outer block still holds it off
                junk = [[i] for i in range(1_000)]
            junk += [[i] for i in range(1_000)]
            assert runs == [] and ref() is not None and not gc.isenabled()
        assert gc.isenabled()
        junk = [[i] for i in range(1_000)]
        assert runs and ref() is None
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*before)
        gc.enable()


def test_paused_leaves_a_disabled_collector_off_and_comes_back_after_an_error() -> None:
    gc.disable()
    try:
        with gcpolicy.paused:
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), gcpolicy.paused:
        raise RuntimeError("a batch failed")
    assert gc.isenabled()


def test_freeze_keeps_what_exists_out_of_collections_and_thaw_gives_it_back() -> None:
    class Node:
        pass

    kept = Node()
    kept.self = kept  # type: ignore[attr-defined]  # a cycle, as a catalog's models make
    try:
        assert gcpolicy.freeze() > 0
        assert gc.get_freeze_count() > 0
        ref = weakref.ref(kept)
        del kept
        gc.collect()
        assert ref() is not None  # frozen: no collection looks at it
        later = Node()
        later.self = later  # type: ignore[attr-defined]
        later_ref = weakref.ref(later)
        del later
        gc.collect()
        assert later_ref() is None  # made after the freeze: collected as ever
        gcpolicy.thaw()
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()


def test_a_catalog_reload_frees_the_frozen_old_catalog(tmp_path: Path) -> None:
    """The worker freezes its start-up objects, the catalog among them (its models refer
    back to it: a cycle only the collector frees); a reload must give it back."""
    from agents.settings import WorkerSettings
    from agents.worker.reload import CatalogReloader
    from streams.catalog import load_catalog
    from tests.fake_tables import FakeRuntime, Table

    path = tmp_path / "services.yaml"
    path.write_text(_CATALOG.format(target=0.99))
    old = load_catalog(path)
    old.models.get("web")  # the models: built at first use, referring to the catalog
    rt = FakeRuntime(WorkerSettings(catalog=path), old)
    rt.bind_tables(Table(), Table())
    reloader = CatalogReloader(rt)
    ref = weakref.ref(old)
    try:
        gcpolicy.freeze()
        del old
        path.write_text(_CATALOG.format(target=0.999))
        assert reloader.reload("test")
        assert rt.catalog.services["web"].target == 0.999
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()


_CATALOG = """\
components:
  db: {{}}
  app: {{}}
services:
  web:
    kind: external
    sla: {{target: {target}, period: 30d}}
    requires: [db, app]
"""

"""The third-party patches in agents/transport/ still find what they patch, apply
only where they should, and refuse versions they were not checked against."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from agents.transport import versions


def test_faust_seek_patch_targets_exist() -> None:
    from faust.transport import consumer as consumer_mod
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from agents.transport.faust_patches import patch_seek_to_committed

    src = inspect.getsource(consumer_mod.Consumer.__init__)
    for name in ("_acked", "_acked_index", "_gap", "_read_offset"):
        assert f"self.{name}" in src, name
    patch_seek_to_committed()
    patch_seek_to_committed()  # idempotent
    assert consumer_mod.Consumer.perform_seek.__module__ == "agents.transport.faust_patches"
    assert AIOKafkaConsumerThread.seek_to_committed.__module__ == "agents.transport.faust_patches"


def test_patched_internals_exist_in_the_installed_versions() -> None:
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    for name in ("_highwaters", "_create_worker_consumer", "_create_client_consumer",
                 "seek_to_committed"):
        assert hasattr(AIOKafkaConsumerThread, name), name
    assert "self.generation" in inspect.getsource(GroupCoordinator._maybe_leave_group)


def test_installed_versions_are_the_tested_ones() -> None:
    for dist in versions.TESTED:
        v = versions.installed(dist)
        assert v is not None and versions.in_tested_range(dist, v), (dist, v)


@pytest.mark.parametrize(("version", "ok"), [("0.15.3", True), ("0.15.9", True),
                                             ("0.16.0", False), ("0.15.2", False),
                                             ("1.0", False)])
def test_range_bounds(version: str, ok: bool) -> None:
    assert versions.in_tested_range("faust-streaming", version) is ok


def test_untested_version_is_refused_naming_library_and_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(versions, "installed", lambda dist: "9.9.9")
    monkeypatch.delenv("SLAWATCH_ALLOW_UNTESTED_DEPS", raising=False)
    with pytest.raises(versions.UntestedVersion, match=r"faust-streaming 9\.9\.9.*faust_patches"):
        versions.require("faust-streaming", "agents.transport.faust_patches")
    monkeypatch.setenv("SLAWATCH_ALLOW_UNTESTED_DEPS", "1")
    versions.require("faust-streaming", "agents.transport.faust_patches")  # warns only


@pytest.mark.parametrize(("kind", "tansu_patched"), [("kafka", False), ("tansu", True)])
def test_broker_quirk_patches_apply_only_with_the_embedded_broker(kind: str, tansu_patched: bool) -> None:
    # A fresh interpreter: patches are process-wide.
    code = (
        "from agents import transport;"
        f"print(','.join(transport.apply({kind!r})));"
        "from aiokafka.consumer.group_coordinator import GroupCoordinator as G;"
        "print(G._maybe_leave_group.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    names = out[0].split(",")
    assert "patch_seek_to_committed" in names
    assert ("patch_leave_group_in_generation_zero" in names) is tansu_patched
    assert (out[1] == "agents.transport.aiokafka_patches") is tansu_patched


def test_lean_records_patch_targets_exist() -> None:
    """What ``lean_records_for`` replaces or calls in aiokafka's fetcher."""
    from aiokafka.consumer import fetcher

    src = inspect.getsource(fetcher.Fetcher._proc_fetch_request)
    assert src.count("MemoryRecords(") == 1  # the one place fetched bytes are wrapped
    for name in ("check_assignment", "_update_position", "has_more", "getall"):
        assert hasattr(fetcher.FetchResult, name), name
    assert "self._partition_records = None" in inspect.getsource(fetcher.FetchResult.getall)
    assert "def _unpack_records" in inspect.getsource(fetcher.PartitionRecords)

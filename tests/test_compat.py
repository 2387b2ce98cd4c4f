"""The third-party patches in agents.transport.compat still find what they patch."""

from __future__ import annotations

import inspect


def test_faust_seek_patch_targets_exist() -> None:
    from faust.transport import consumer as consumer_mod
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from agents.transport.compat import patch_faust_seek_to_committed

    src = inspect.getsource(consumer_mod.Consumer.__init__)
    for name in ("_acked", "_acked_index", "_gap", "_read_offset"):
        assert f"self.{name}" in src, name
    patch_faust_seek_to_committed()
    patch_faust_seek_to_committed()  # idempotent
    assert consumer_mod.Consumer.perform_seek.__module__ == "agents.transport.compat"
    assert AIOKafkaConsumerThread.seek_to_committed.__module__ == "agents.transport.compat"

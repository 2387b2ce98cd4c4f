"""Patches of third-party internals, fenced: one module per library patched.

- ``faust_patches``: Faust's seek to committed offsets, its recovery highwaters, its
  hard-coded fetch wait.
- ``aiokafka_patches``: LeaveGroup in generation 0; lean records for the batch
  consumer's topics (``lean_records_for``, applied when a batch topic is registered).
- ``kafka_python_batches``: the publisher's pre-encoded record batches, handed to
  kafka-python's accumulator.
- ``webserver``: Faust's aiohttp web driver with a connection cap, a TLS handshake
  timeout and no version in ``Server`` (registered as Faust's ``slawatch://`` driver).
- ``versions``: the versions each was checked against, and the start-up guard.

Each patch says why, its upstream issue if any, and which broker needs it; a patch only
the embedded broker (tansu) needs applies only when ``--broker-kind tansu``.
"""

from __future__ import annotations

BROKER_KINDS = ("kafka", "tansu")


def apply(broker_kind: str) -> list[str]:
    """Apply the worker's patches for ``broker_kind``; returns their names (for the log)."""
    from agents.transport import aiokafka_patches, faust_patches

    applied = [faust_patches.patch_seek_to_committed, faust_patches.patch_fetch_max_wait]
    if broker_kind == "tansu":
        applied += [faust_patches.patch_highwaters_read_last_batch,
                    aiokafka_patches.patch_leave_group_in_generation_zero]
    for patch in applied:
        patch()
    return [p.__name__ for p in applied]

"""Patches of aiokafka internals (checked against the versions in ``versions.TESTED``).

Applied only with the embedded broker (``--broker-kind tansu``): with Kafka the patched
condition never differs from aiokafka's own.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.transport import versions

log = logging.getLogger("slawatch.transport")

_patched = False


def patch_leave_group_in_generation_zero() -> None:
    """Make aiokafka send LeaveGroup in generation 0 too (idempotent).

    Why: aiokafka leaves a consumer group on shutdown only when ``generation > 0``. Kafka
    numbers generations from 1, but tansu starts at 0, so a worker stopped in its
    group's first generation never sent LeaveGroup; the coordinator kept the dead member
    until its session timed out, and a worker restarted meanwhile joined as a follower
    of a leader that no longer existed: ~20 s to resume instead of ~7 s (measured).
    "No generation" is -1 in aiokafka, so ``>= 0`` is the faithful test.
    Upstream: none filed (a broker quirk, not an aiokafka bug).
    """
    global _patched
    if _patched:
        return
    versions.require("aiokafka", __name__)
    from aiokafka.consumer.group_coordinator import GroupCoordinator
    from aiokafka.errors import KafkaError
    from aiokafka.protocol.group import LeaveGroupRequest

    async def _maybe_leave_group(self: Any) -> None:
        if self.generation >= 0 and self.member_id and self._group_instance_id is None:
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as err:
                log.warning("LeaveGroup request failed: %s", err)
            else:
                log.info("left consumer group %s", self.group_id)
        self.reset_generation()

    GroupCoordinator._maybe_leave_group = _maybe_leave_group
    _patched = True

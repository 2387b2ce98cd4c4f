"""Stand-ins for a Faust table (store dict + changelog topic name) and for a worker's
runtime that owns every partition, for TrackerTable and collector tests and the scrape
benchmark; a changelog as a list of sends, and the table recovery builds from it."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.worker.runtime import Runtime
from agents.worker.state import PartitionStats


class Store(dict[str, bytes]):
    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass


class Topic:
    """What the pipeline and TrackerTable read of a Faust topic: its name and the
    producer's request size limit."""

    def __init__(self, name: str = "t-changelog") -> None:
        self.name = name
        self.app = type("App", (), {"conf": type("Conf", (), {"producer_max_request_size": 1 << 20})})

    def get_topic_name(self) -> str:
        return self.name


class PipelineTopics:
    """The topics ``Pipeline`` sends to besides the tables' changelogs."""

    dlq = Topic("dlq")
    reroute = Topic("reroute")
    segments = Topic("segments")


class Table:
    """What TrackerTable reads of a Faust table: ``data`` and a changelog topic."""

    def __init__(self, data: dict[str, bytes] | None = None, changelog: str = "t-changelog"
                 ) -> None:
        self.data = Store(data or {})
        self.changelog_topic = Topic(changelog)


#: A changelog as sent: (key, value or None for a tombstone, partition), in order.
Log = list[tuple[bytes, bytes | None, int]]


async def flush_to(tt: Any, log: Log) -> None:
    """``TrackerTable.flush`` with every send appended to ``log`` and acknowledged."""
    async def send(topic: str, key: bytes, val: bytes | None, partition: int) -> Any:
        log.append((key, val, partition))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    await tt.flush(send)


def replay(log: Log) -> Table:
    """What recovery builds from a changelog: last write per key, tombstones delete."""
    t = Table()
    for key, val, _ in log:
        if val is None:
            t.data.pop(key.decode(), None)
        else:
            t.data[key.decode()] = val
    return t


class FakeRuntime(Runtime):
    """Every partition owned, recovered and ready; tables are plain dicts."""

    def owned_services(self) -> list[str]:
        return list(self.catalog.services)

    def owned_components(self) -> list[str]:
        return list(self.catalog.components)

    def owned_stats(self) -> list[PartitionStats]:
        return []

    def ready(self) -> bool:
        return True

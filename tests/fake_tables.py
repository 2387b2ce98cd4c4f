"""Stand-ins for a Faust table (store dict + changelog topic name) and for a worker's
runtime that owns every partition, for TrackerTable and collector tests and the scrape
benchmark."""

from __future__ import annotations

from typing import Any

from agents.worker.runtime import Runtime
from agents.worker.state import PartitionStats


class Store(dict[str, bytes]):
    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass


class Topic:
    def get_topic_name(self) -> str:
        return "t-changelog"


class Table:
    """What TrackerTable reads of a Faust table: ``data`` and a changelog topic."""

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data = Store(data or {})
        self.changelog_topic = Topic()


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

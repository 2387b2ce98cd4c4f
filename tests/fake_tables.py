"""A stand-in for a Faust table (store dict + changelog topic name) for TrackerTable tests."""

from __future__ import annotations

from typing import Any


class Store(dict[str, bytes]):
    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        pass


class Topic:
    def get_topic_name(self) -> str:
        return "t-changelog"


class Table:
    def __init__(self) -> None:
        self.data = Store()
        self.changelog_topic = Topic()

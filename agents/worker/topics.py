"""The worker's topics: raw bytes everywhere, partition counts from the settings.

Values stay bytes end to end: the input is decoded by the engine's ``parse_event``
(which must see the original bytes to reject them faithfully), the DLQ gets the
original bytes back, and segments are orjson written and read by the pipeline.
All topics are declared ``internal`` so that Faust creates any that are missing with
the configured partitions and replication (an existing topic is left as it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.settings import WorkerSettings


@dataclass(frozen=True)
class Topics:
    events_in: Any  # component-events + the re-route topic, one stream
    reroute: Any
    segments: Any
    dlq: Any

    def all_declared(self) -> list[Any]:
        return [self.events_in, self.segments, self.dlq]


def make_topics(app: Any, settings: WorkerSettings) -> Topics:
    common: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.partitions,
        "replicas": settings.replication_factor,
        "internal": True,
    }
    return Topics(
        events_in=app.topic(settings.events_topic, settings.reroute_topic, **common),
        reroute=app.topic(settings.reroute_topic, **common),
        segments=app.topic(settings.segments_topic, **common),
        dlq=app.topic(settings.dlq_topic, **common),
    )

"""Shared fixtures. Broker/worker process fixtures live in fixtures_kafka.py."""

from tests.fixtures_kafka import kafka_broker, worker_factory

__all__ = ["kafka_broker", "worker_factory"]

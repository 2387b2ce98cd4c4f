"""Publisher throughput: slawatch's Publisher vs a naive kafka-python loop, same run.

    .venv/bin/python bench/publish.py [--events 100000] [--partitions 8]

Starts an embedded tansu broker, pre-encodes N small JSON events over 400 components,
and times each producer from the first send to the last acknowledgement (flush):

* naive:        KafkaProducer(linger_ms=5, batch_size=256 KiB).send() per event
* per-record:   Publisher(per_record=True): send() with an explicit murmur2 partition
* batch:        Publisher: record batches encoded by slawatch, sent by kafka-python
* batch+parse:  the `slawatch publish` path: parse_event() on each line, then batch
* confluent:    confluent-kafka (librdkafka), if installed, for reference

Also says whether kafka-python found the C ``crc32c`` module: without it every batch's
CRC is computed in pure Python (~0.3 µs per byte), which alone caps any kafka-python
producer at about 45,000 small events/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from agents.clients.broker import EmbeddedBroker
from agents.clients.publish import KafkaSettings, Publisher


def _timed(n: int, fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--components", type=int, default=400)
    ap.add_argument("--pure-python-crc", action="store_true",
                    help="make kafka-python ignore the C crc32c module (what a venv without it gets)")
    opts = ap.parse_args()
    n = opts.events

    import kafka
    import kafka.record.util as kru

    if opts.pure_python_crc:
        kru.crc32c_c = None
        kru.calc_crc32c.__defaults__ = (kru.crc32c_py,)

    print(f"kafka-python {kafka.__version__}; C crc32c: {'yes' if kru.crc32c_c else 'NO (pure Python)'}")
    now = time.time()
    msgs = [
        (
            f"comp-{i % opts.components}".encode(),
            orjson.dumps({"component": f"comp-{i % opts.components}", "state": "up", "ts": now,
                          "source": "bench"}),
        )
        for i in range(n)
    ]
    print(f"{n} events of ~{len(msgs[0][1])} bytes over {opts.components} components, "
          f"{opts.partitions} partitions")
    results: dict[str, float] = {}
    with EmbeddedBroker() as broker:
        topics = ["naive", "per-record", "batch", "batch+parse", "confluent"]
        broker.create_topics({t: opts.partitions for t in topics})
        settings = KafkaSettings(broker=broker.url)

        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, batch_size=256 * 1024)
        producer.send("naive", b"warm-up").get(10)

        def naive() -> None:
            for k, v in msgs:
                producer.send("naive", key=k, value=v)
            producer.flush()

        results["naive kafka-python send()"] = _timed(n, naive)
        producer.close()

        for name, per_record in (("per-record", True), ("batch", False)):
            pub = Publisher(settings, name, per_record=per_record)

            def run(pub: Publisher = pub) -> None:
                pub.send_many(msgs)
                pub.flush()

            results[f"slawatch Publisher ({name})"] = _timed(n, run)
            assert pub.failed == 0, pub.first_error
            pub.close()

        from streams.events import parse_event

        pub = Publisher(settings, "batch+parse")

        def parse_and_send() -> None:
            t = time.time()
            for _, v in msgs:
                pub.send(parse_event(v, t).component.encode(), v)
            pub.flush()

        results["slawatch publish path (parse_event + batch)"] = _timed(n, parse_and_send)
        pub.close()

        try:
            import confluent_kafka
        except ImportError:
            confluent_kafka = None  # type: ignore[assignment]  # librdkafka is optional here
        if confluent_kafka is not None:
            cp = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5,
                                           "partitioner": "murmur2_random"})

            def confluent() -> None:
                produce = cp.produce
                for k, v in msgs:
                    while True:
                        try:
                            produce("confluent", v, k)
                            break
                        except BufferError:
                            cp.poll(0.01)
                cp.flush(30)

            results["confluent-kafka produce() (reference)"] = _timed(n, confluent)
            del cp  # disconnect before the broker stops, or librdkafka logs the refusal

    base = results["naive kafka-python send()"]
    width = max(len(k) for k in results)
    for name, rate in results.items():
        print(f"{name:<{width}}  {rate:>10,.0f} events/s  {rate / base:5.1f}x naive")
    return 0


if __name__ == "__main__":
    sys.exit(main())

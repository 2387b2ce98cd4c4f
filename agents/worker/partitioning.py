"""Which partition a component or service lives in: Kafka's default partitioner.

The pipeline sends every message with an explicit partition computed here, instead of
leaving it to a client library, for three reasons: the metrics collector must know
which services are its own before they ever got a message (so a quiet service is still
exported by exactly one worker); Faust's web router (``table_route``) and any Java or
kafka-python producer use the same murmur2 hash, so they all agree; and a producer with
another partitioner (librdkafka's default is CRC32) can be detected and its messages
re-routed instead of splitting one component's history over two partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from streams import native

_CACHE_LIMIT = 100_000


class Partitioner:
    """``partition(key)`` = murmur2(utf-8 key) mod n, as Kafka's Java client does.

    Results are memoised (the key sets are catalog-sized), but the memo is bounded so a
    flood of made-up component ids cannot grow it without limit.
    """

    def __init__(self, partitions: int) -> None:
        from kafka.partitioner.default import murmur2

        self.partitions = partitions
        self._murmur2: Callable[[bytes], int] = murmur2
        self._memo: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        p = self._memo.get(key)
        if p is None:
            p = (self._murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions
            if len(self._memo) >= _CACHE_LIMIT:
                self._memo.clear()
            self._memo[key] = p
        return p

    def many(self, keys: Sequence[str]) -> list[int]:
        """``[self(k) for k in keys]``, the memo's hits read in one C loop (``map``):
        stage 1 asks it of every record of an input partition read where it is (a
        Python call per distinct component of a slice cost more than the grouping)."""
        out: list[int | None] = list(map(self._memo.get, keys))
        if None in out:
            for i, p in enumerate(out):
                if p is None:
                    out[i] = self(keys[i])
        return out  # type: ignore[return-value]

    def others(self, keys: Iterable[str], partition: int) -> set[str]:
        """The keys of ``keys`` not in ``partition``. Stage 1 asks it of every
        component of a slice (at 20,000 components nearly one a record): the memo's
        hits are tested in one C loop, only the rest call ``self``."""
        fast = native.native
        memo = self._memo
        maybe = (fast.not_memo(keys, memo, partition) if fast is not None
                 else [k for k in keys if memo.get(k) != partition])
        return {k for k in maybe if self(k) != partition}

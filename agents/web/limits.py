"""What one HTTP request may cost the worker, and the checks made before any work.

The web server runs on the worker's event loop, next to the pipeline and ``/healthz``:
a request that makes the loop parse for seconds, or that makes the process allocate
gigabytes, hurts every number. So every limit here is checked before the work it
guards: the body is read with a cap (never buffered whole), and its JSON structure
(nesting, number of items, number of values) is measured on a skeleton of bytes before
``orjson`` builds a single object. Parsed first, a 4 MB ``[0,0,...]`` becomes 2M
objects, re-serialised one by one before the item cap is looked at (21 s, 8 GB measured).

Slow clients are cut off by the server (``agents/transport/webserver.py``): headers
must arrive within ``--web-header-timeout`` of the connection (or of the last
response), an ingest body within ``--web-body-timeout``, and at most
``--web-max-connections`` connections are served at once.
"""

from __future__ import annotations

import re

#: Largest ingest body (bytes). Alertmanager sends a whole group in one body: above
#: ~600 alerts per group set ``max_alerts`` in its webhook_config.
MAX_BODY_BYTES = 1024 * 1024
#: Events (or alerts) in one request.
MAX_ITEMS = 10_000
#: JSON values (scalars and containers) in one body: bounds the objects a parse makes.
MAX_VALUES = 100_000
#: Nesting of arrays and objects. An Alertmanager payload needs 4.
MAX_DEPTH = 16
#: Ingest requests read and parsed at once; the others wait (their bodies unread) ...
MAX_CONCURRENT_INGESTS = 2
#: ... at most this long (s), then get 503.
INGEST_QUEUE_TIMEOUT = 10.0

#: TLS handshakes must finish within this long (s).
HANDSHAKE_TIMEOUT = 10.0


class LimitError(Exception):
    """A request is refused: ``status`` is the HTTP status, ``reason`` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# A JSON string token, or an unterminated one up to the end: possessive, so the scan is
# linear whatever the input (a failing match never restarts inside a string).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.S)
_STRUCTURE = b"[]{},"
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in _STRUCTURE)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_ARRAY = re.compile(rb"\s*\[")
_EMPTY_ARRAY = re.compile(rb"\s*\[\s*\]")


def check_structure(body: bytes, *, lines: bool = False, max_items: int = MAX_ITEMS,
                    max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH) -> int:
    """Measure a JSON body (or JSON lines) without parsing it; return its item count.

    The items are the elements of a top-level array, the lines of JSON lines, or 1 for
    any other document. Raises ``LimitError`` (413 for counts, 400 for nesting).
    Strings are cut out first (brackets and commas inside them do not count), then only
    ``[]{},`` remain: the loop below runs over at most ~3 × ``max_values`` bytes.
    """
    skeleton = _STRING.sub(b"", body).translate(None, _NOT_STRUCTURE)
    values = skeleton.count(b",") + skeleton.count(b"[") + skeleton.count(b"{")
    if values > max_values:
        raise LimitError(413, f"more than {max_values} JSON values in one body (the limit)")
    depth = 0
    top_commas = 0
    for c in skeleton:
        if c in _OPEN:
            depth += 1
            if depth > max_depth:
                raise LimitError(400, f"JSON nested deeper than {max_depth} levels (the limit)")
        elif c in _CLOSE:
            depth -= 1
        elif depth == 1:  # a comma between top-level items
            top_commas += 1
    if lines:  # blank lines count too: an exact count would split the whole body
        items = body.strip().count(b"\n") + 1
    elif _ARRAY.match(body):
        items = 0 if _EMPTY_ARRAY.match(body) else top_commas + 1
    else:
        items = 1
    if items > max_items:
        raise LimitError(413, f"{items} items in one request; the limit is {max_items}")
    return items

"""What one group-commit flush of intake writes: the events, each messageId stored once.

Segment-style SDKs resend a batch they got no answer for, with the same ``messageId`` in
each message, and a client of ``POST /v1/events`` may send its own ``message_id``. A flush
whose rows carry none is one COPY, as ever. Otherwise, in one transaction, it claims the
(organisation, messageId) keys in ``event_message_ids`` (one statement for the whole flush,
see ``store.CLAIM_MESSAGE_IDS``) and COPYs only the rows whose key it claimed: a resend
within the window is acknowledged like the first attempt (the client retries until it
hears success) but stored once, across API processes and restarts. A row error rolls the
claims back with the COPY, so the writer's halving retries start from a clean slate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import prometheus_client

from surge.ingest import store
from surge.ingest.store import MESSAGE_ID, Conn, Row
from surge.observability.metrics import REGISTRY

duplicates_dropped = prometheus_client.Counter(
    "surge_ingest_duplicates_dropped",
    "Events acknowledged but not stored again: their messageId was accepted within the window.",
    registry=REGISTRY,
)


#: Longest messageId kept as its own key; a longer one is keyed by its SHA-256, so any
#: messageId a client sends is de-duplicated and the primary key's entries stay small.
MAX_KEY_CHARS = 200
Key = tuple[int, str]


def message_key(message_id: str) -> str:
    """The de-duplication key of ``message_id``."""
    if len(message_id) <= MAX_KEY_CHARS:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()


def distinct_keys(rows: Sequence[Row]) -> tuple[list[Key | None], dict[Key, int]]:
    """Each row's (organisation, key), None without a messageId; and each key's first row."""
    keys: list[Key | None] = []
    first: dict[Key, int] = {}
    for i, row in enumerate(rows):
        message_id = row[MESSAGE_ID]
        if message_id is None:
            keys.append(None)
        else:
            key = (row[0], message_key(message_id))
            keys.append(key)
            first.setdefault(key, i)
    return keys, first


async def write_events(conn: Conn, rows: Sequence[Row], window: float) -> int:
    """Store ``rows``, each messageId at most once per ``window`` seconds (0: no check).

    Returns how many rows were duplicates and not stored. ``conn`` is in autocommit mode:
    a flush without messageIds is a single COPY, atomic on its own.
    """
    if window <= 0 or all(row[MESSAGE_ID] is None for row in rows):
        await store.copy_events(conn, rows)
        return 0
    keys, first = distinct_keys(rows)
    async with conn.transaction():
        taken = await store.claim_message_ids(conn, sorted(first), window)
        keep = rows
        if taken or len(first) < len(rows) - keys.count(None):
            keep = [
                row
                for i, (row, key) in enumerate(zip(rows, keys, strict=True))
                if key is None or (first[key] == i and key not in taken)
            ]
        # A COPY error then numbers its line among ``keep``: only a request that holds a
        # duplicate and a row PostgreSQL refuses despite validation would see it shifted.
        await store.copy_events(conn, keep)
    dropped = len(rows) - len(keep)
    if dropped:
        duplicates_dropped.inc(dropped)
    return dropped

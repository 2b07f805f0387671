"""Generation keys that are cheap for the store to index.

``new_gen_id()`` returns 32 hex characters, like ``uuid4().hex``, but the first 12 are the Unix
time in milliseconds, so keys made together sort together. DuckDB's primary-key index (an ART)
and the writer's duplicate check both work on neighbouring keys much faster than on random ones
(about 2x the ingest rate per CPU second in ``bench/store_ingest.py``)::

    row["gen_id"] = new_gen_id()   # once, when the generation is created; reuse it on retries
"""

from __future__ import annotations

import secrets
import time


def new_gen_id() -> str:
    """A new time-ordered key: 12 hex digits of Unix milliseconds, then 80 random bits."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"

"""The request cache: answers already received, keyed by what was asked.

A sqlite file with one row per successful answer, keyed by the SHA-256 of the canonical JSON of
the model, the messages (images included, as their data URLs) and every sampling parameter. A
rerun after a crash, or with more data, sends only the requests whose key is not there yet.
Failed requests (an HTTP or transport error, an answer without text) are never stored, so a
rerun retries them. An answer with text is stored when it arrives; a stage that then cannot parse
it removes it again (:meth:`interleaf.llm.Response.uncache`, through
:func:`interleaf.llm.parse_failure`), so the next run asks again: after a change of
``structured`` (which is not part of the key: it says how the schema is sent, not what is asked),
of ``max_tokens``, or of the server. To ask everything anew, pass ``refresh=True`` to the client
(``--refresh-cache``): nothing is served from the cache and every answer replaces the stored one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

#: The columns of the answers table.
_COLUMNS = ("key", "text", "finish_reason", "prompt_tokens", "completion_tokens", "created")


def request_key(model: str, messages: Any, params: dict[str, Any]) -> str:
    """The cache key of one chat request: SHA-256 (hex) of ``{"model", "messages", "params"}``
    as canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    """A sqlite request cache at ``path`` (created with its folder when missing). WAL journal:
    each answer is committed as it arrives, so a killed run keeps every answer it received."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT, "
                "prompt_tokens INTEGER, completion_tokens INTEGER, created REAL NOT NULL)"
            )
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(answers)")}
        except sqlite3.DatabaseError as e:
            raise ValueError(f"cache {self.path}: not a usable sqlite file ({e})") from None
        if not set(_COLUMNS) <= columns:
            self._db.close()
            raise ValueError(f"cache {self.path}: not an interleaf request cache (its answers table has the columns {', '.join(sorted(columns))}): use another cache file")
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str, str | None, int | None, int | None] | None:
        """``(text, finish_reason, prompt_tokens, completion_tokens)`` or None. A file that
        cannot be read (damaged pages) is a ValueError naming it, never a silent miss."""
        try:
            with self._lock:
                row = self._db.execute("SELECT text, finish_reason, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as e:
            raise ValueError(f"cache {self.path}: cannot be read ({e}): delete the file (its answers are asked again) or use another cache file") from None
        return None if row is None else (row[0], row[1], row[2], row[3])

    def put(self, key: str, text: str, finish_reason: str | None, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (key, text, finish_reason, prompt_tokens, completion_tokens, time.time()),
            )

    def delete(self, key: str) -> None:
        """Removes the answer stored under ``key`` (nothing when there is none)."""
        with self._lock:
            self._db.execute("DELETE FROM answers WHERE key = ?", (key,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""What a run has met so far, in memory that does not grow with the corpus.

- ``SeenSet``: digests of the texts met (exact ``duplicates``/``reused`` counts), on disk.
- ``SeenIds``: each id and where it first appeared, for the duplicate-id check: a dict up to
  ``MEMORY_IDS`` entries, then moved into a temporary SQLite file and looked up there.
- ``BadLog``: the records set aside with ``--skip-bad``; the first ``MEMORY_BAD`` in memory, the
  rest in a temporary JSONL file, read back in order when the errors file is written.

Each temporary file is deleted by ``close`` (and by the garbage collector, as a last resort).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from typing import Iterable, Iterator, Sequence

from .records import BadRecord

__all__ = ["SeenSet", "SeenIds", "BadLog", "MEMORY_IDS", "MEMORY_BAD"]

SEEN_BATCH = 500
MEMORY_IDS = 200_000
MEMORY_BAD = 10_000


def _temp_db(prefix: str) -> tuple[str, sqlite3.Connection]:
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".sqlite")
    os.close(fd)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-2048")  # KiB: bounded whatever the corpus
    return path, db


class _TempFile:
    path: str | None = None
    _db: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:  # pragma: no cover - already gone
                pass
            self.path = None

    def __del__(self):  # pragma: no cover - a generator abandoned without close
        self.close()


class SeenSet(_TempFile):
    """Digests of the texts met so far in this run, on disk (a temporary SQLite file)."""

    def __init__(self):
        self.path, self._db = _temp_db("gguf-embed-seen-")
        self._db.execute("CREATE TABLE seen (hash BLOB PRIMARY KEY) WITHOUT ROWID")

    def add(self, keys: Sequence[bytes]) -> set[bytes]:
        """Add ``keys`` (distinct); return those that were there before."""
        before: set[bytes] = set()
        for a in range(0, len(keys), SEEN_BATCH):
            part = keys[a:a + SEEN_BATCH]
            before.update(bytes(r[0]) for r in self._db.execute(
                f"SELECT hash FROM seen WHERE hash IN ({','.join('?' * len(part))})", part))
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", [(k,) for k in keys if k not in before])
        self._db.execute("COMMIT")
        return before


class SeenIds(_TempFile):
    """id -> where it first appeared; the dict moves to disk when it reaches ``limit`` entries."""

    def __init__(self, limit: int | None = None):
        self.limit, self.recent = limit or MEMORY_IDS, {}

    def get(self, rid: str) -> str | None:
        where = self.recent.get(rid)
        if where is None and self._db is not None:
            row = self._db.execute("SELECT place FROM ids WHERE id=?", (rid,)).fetchone()
            where = row[0] if row else None
        return where

    def __contains__(self, rid: str) -> bool:
        return self.get(rid) is not None

    def __getitem__(self, rid: str) -> str:
        where = self.get(rid)
        if where is None:
            raise KeyError(rid)
        return where

    def __setitem__(self, rid: str, where: str) -> None:
        self.recent[rid] = where
        if len(self.recent) >= self.limit:
            self._spill()

    def _spill(self) -> None:
        if self._db is None:
            self.path, self._db = _temp_db("gguf-embed-ids-")
            self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, place TEXT NOT NULL) WITHOUT ROWID")
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR IGNORE INTO ids VALUES (?, ?)", self.recent.items())
        self._db.execute("COMMIT")
        self.recent = {}


class BadLog(_TempFile):
    """A list of BadRecords that keeps at most ``limit`` in memory (append, extend, len, iterate)."""

    def __init__(self, limit: int | None = None):
        self.limit, self.head, self._spilled, self._fh = limit or MEMORY_BAD, [], 0, None

    def append(self, record) -> None:
        if len(self.head) < self.limit:
            self.head.append(record)
            return
        if self._fh is None:
            fd, self.path = tempfile.mkstemp(prefix="gguf-embed-bad-", suffix=".jsonl")
            self._fh = os.fdopen(fd, "w+", encoding="utf-8")
        self._fh.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        self._spilled += 1

    def extend(self, records: Iterable) -> None:
        for r in records:
            self.append(r)

    def __len__(self) -> int:
        return len(self.head) + self._spilled

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator:
        yield from self.head
        if self._fh is not None:
            self._fh.flush()
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    d = json.loads(line)
                    yield BadRecord(d["where"], d.get("id"), d["error"])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        super().close()

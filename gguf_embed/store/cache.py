"""A content-addressed store of vectors: one SQLite file in WAL mode, safe for several processes.

A vector is keyed by its *space* (the model file's sha256 and every setting that changes a
vector: prompt, instruction, pooling, dimensions, normalisation, truncation, token limit)
and the sha256 of its text. Each batch is committed in one short transaction, so a process
killed at any moment loses nothing it had finished, and other processes see it at once.

Layout (schema 2): vectors are raw little-endian float32 blobs in an ordinary rowid table with
64 KiB pages, so a row lives whole in its leaf page (a WITHOUT ROWID table spills any row over
about a quarter page into overflow pages, which tripled the file); the (space, digest) key is a
separate index. No text is stored. The WAL is checkpointed as it grows and when a cache closes.
A schema-1 file is migrated in place the first time it is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import CacheError
from ..model.gguf_file import sha256_file

__all__ = ["VectorCache", "Space", "CacheError", "default_cache_path", "text_key", "sha256_file", "remembered_sha256"]

LOOKUP_CHUNK = 500
BUSY_TIMEOUT_S = 60.0

PAGE_SIZE = 65536
WAL_AUTOCHECKPOINT = 256  # pages: a WAL of about 16 MiB is folded back into the file
SCHEMA_VERSION = 2
PAGE_CACHE_KIB = 4096
VIEW = "CREATE VIEW IF NOT EXISTS vectors AS SELECT space, hash, tokens, vector, used FROM vecs"  # schema 1's name
SCHEMA = """
CREATE TABLE IF NOT EXISTS spaces (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, model TEXT NOT NULL, model_sha256 TEXT NOT NULL,
    params TEXT NOT NULL, dims INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vecs (
    space INTEGER NOT NULL, hash BLOB NOT NULL, tokens INTEGER NOT NULL, used INTEGER NOT NULL, vector BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS vecs_key ON vecs (space, hash);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""


def default_cache_path() -> Path:
    """``$GGUF_EMBED_CACHE``, else ``$XDG_CACHE_HOME/gguf-embed/vectors.sqlite`` (``~/.cache/...``)."""
    env = os.environ.get("GGUF_EMBED_CACHE")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gguf-embed" / "vectors.sqlite"


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _today() -> int:
    return int(time.time() // 86400)


@dataclass(frozen=True)
class Space:
    id: int
    dims: int


class VectorCache:
    """One SQLite file; thread-safe within a process, safe across processes (WAL, busy timeout)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
            self._open_retrying()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"cannot use the cache {self.path}: {exc}") from None
        except OSError as exc:
            raise CacheError(f"cannot create the cache {self.path}: {exc.strerror}") from None
        self._lock = threading.RLock()

    # --- plumbing ----------------------------------------------------------------------

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _open_retrying(self) -> None:
        """Open, waiting out another process that is creating or converting the same file.

        Switching a file to WAL takes an exclusive lock and SQLite answers "locked" at once
        rather than through the busy timeout, so two jobs starting together on a new cache
        would otherwise fail. Retry with a short backoff up to the busy timeout.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.01
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def _open(self) -> None:
        db = self._db
        if not self._tables():  # a new file: large pages before the first table
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: a commit survives a killed process
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")  # bounded: a job's memory must not grow with its corpus
        with self._write():
            for stmt in filter(str.strip, SCHEMA.split(";")):
                db.execute(stmt)
            migrate = "vectors" in self._tables()
            if migrate:  # schema 1: WITHOUT ROWID rows with the blob inline, mostly in overflow pages
                db.execute("INSERT OR IGNORE INTO vecs (space, hash, tokens, used, vector) "
                           "SELECT space, hash, tokens, used, vector FROM vectors")
                db.execute("DROP TABLE vectors")
            db.execute(VIEW)
        if migrate:
            self._repage()

    def _repage(self) -> None:
        """Rewrite the file with the large pages (best effort: another process holding it open keeps it as is)."""
        db = self._db
        try:
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            db.execute("VACUUM")
        except sqlite3.OperationalError:
            pass
        finally:
            db.execute("PRAGMA journal_mode=WAL")

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind, *_):
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _write(self) -> "VectorCache._Tx":
        return VectorCache._Tx(self._db)

    def checkpoint(self) -> None:
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError:  # pragma: no cover - busy: the next writer folds it in
            pass

    def close(self) -> None:
        self.checkpoint()
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- model file hashes -------------------------------------------------------------

    def file_sha256(self, path: str | os.PathLike) -> str:
        """sha256 of a file, read once per (path, size, mtime) and remembered here."""
        p = Path(path).resolve()
        st = p.stat()
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE path=?", (str(p),)).fetchone()
        if row and row[0] == st.st_size and row[1] == st.st_mtime_ns:
            return row[2]
        digest = sha256_file(p)
        with self._lock, self._write() as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?,?,?,?)", (str(p), st.st_size, st.st_mtime_ns, digest))
        return digest

    # --- vectors -----------------------------------------------------------------------

    def space(self, model: str, params: dict) -> Space:
        key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        with self._lock:
            row = self._db.execute("SELECT id, dims FROM spaces WHERE key=?", (key,)).fetchone()
            if row is None:
                with self._write() as db:
                    db.execute("INSERT OR IGNORE INTO spaces (key, model, model_sha256, params, dims, created) "
                               "VALUES (?,?,?,?,?,?)", (key, model, params["model_sha256"],
                                                        json.dumps(params, sort_keys=True), params["dimensions"],
                                                        time.time()))
                row = self._db.execute("SELECT id, dims FROM spaces WHERE key=?", (key,)).fetchone()
        return Space(int(row[0]), int(row[1]))

    def get_many(self, space: Space, keys: Sequence[bytes]) -> dict[bytes, tuple[np.ndarray, int]]:
        """The stored (vector, tokens) of every key that has one."""
        found: dict[bytes, tuple[np.ndarray, int]] = {}
        stale: list[tuple] = []
        today = _today()
        with self._lock:
            for a in range(0, len(keys), LOOKUP_CHUNK):
                part = keys[a:a + LOOKUP_CHUNK]
                rows = self._db.execute(
                    f"SELECT hash, tokens, vector, used FROM vecs WHERE space=? AND hash IN "
                    f"({','.join('?' * len(part))})", (space.id, *part)).fetchall()
                for h, tokens, blob, used in rows:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if len(vec) == space.dims:
                        found[bytes(h)] = (vec, int(tokens))
                        if used < today:
                            stale.append((today, space.id, h))
            if stale:  # when each vector was last used, to the day, for `cache prune --older-than`
                with self._write() as db:
                    db.executemany("UPDATE vecs SET used=? WHERE space=? AND hash=?", stale)
        return found

    def put_many(self, space: Space, keys: Sequence[bytes], vectors: np.ndarray, tokens: Iterable[int]) -> None:
        """Store a batch in one transaction: all of it or none of it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        today = _today()
        vectors = vectors.astype("<f4", copy=False)
        rows = [(space.id, k, int(n), today, v.tobytes()) for k, v, n in zip(keys, vectors, tokens)]
        with self._lock, self._write() as db:
            db.executemany("INSERT OR REPLACE INTO vecs (space, hash, tokens, used, vector) VALUES (?,?,?,?,?)", rows)

    # --- housekeeping ------------------------------------------------------------------

    def stats(self) -> dict:
        with self._lock:
            spaces = self._db.execute(
                "SELECT s.id, s.model, s.model_sha256, s.params, s.dims, COUNT(v.hash), "
                "COALESCE(SUM(LENGTH(v.vector)), 0), MAX(v.used) FROM spaces s LEFT JOIN vecs v ON v.space = s.id "
                "GROUP BY s.id ORDER BY s.id").fetchall()
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "path": str(self.path), "bytes": size, "vectors": sum(r[5] for r in spaces),
            "spaces": [{"id": r[0], "model": r[1], "model_sha256": r[2], "params": json.loads(r[3]), "dims": r[4],
                        "vectors": r[5], "vector_bytes": r[6],
                        "last_used": None if r[7] is None else time.strftime("%Y-%m-%d", time.gmtime(r[7] * 86400))}
                       for r in spaces],
        }

    def prune(self, *, older_than_days: float | None = None, model_sha256: str | None = None,
              everything: bool = False) -> int:
        """Delete vectors (all, those of one model file, or those unused for N days); returns how many."""
        where, args = [], []
        if older_than_days is not None:
            where.append("used < ?")
            args.append(_today() - int(older_than_days))
        if model_sha256 is not None:
            where.append("space IN (SELECT id FROM spaces WHERE model_sha256 LIKE ?)")
            args.append(model_sha256 + "%")
        if not where and not everything:
            raise CacheError("say what to prune: `older_than` DAYS, `model_sha256` HASH or `everything`")
        sql = "DELETE FROM vecs" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            with self._write() as db:
                n = db.execute(sql, args).rowcount
                if everything and not where:
                    db.execute("DELETE FROM spaces")
            self.checkpoint()
            self._db.execute("VACUUM")
        return int(n)


def remembered_sha256(path: str | os.PathLike) -> str:
    """sha256 of a model file, remembered in the default vector cache (by path, size and mtime) when it
    opens, else read in full."""
    try:
        with VectorCache(default_cache_path()) as cache:
            return cache.file_sha256(path)
    except CacheError:
        return sha256_file(Path(path))

"""Output writers (npy, jsonl, parquet), the manifest, and atomic placement of finished files."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

__all__ = ["Rows", "OUTPUT_FORMATS", "output_format", "atomic_path", "write_rows", "sidecar", "publish"]

OUTPUT_FORMATS = ("jsonl", "npy", "parquet")
PARQUET_ROW_GROUP = 65536


@dataclass
class Rows:
    """The finished output, in input order (chunks of one document in document order)."""

    ids: list[str]
    vectors: np.ndarray  # float32 (n, d)
    tokens: np.ndarray  # int64 (n,)
    chunk: np.ndarray | None = None  # int32 (n,) when chunking
    start: np.ndarray | None = None
    end: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


def output_format(output: Path | None, given: str | None) -> str:
    if given:
        return given
    if output is not None and output.suffix.lower() in (".npy", ".parquet"):
        return output.suffix.lower()[1:]
    return "jsonl"


def sidecar(output: Path, suffix: str) -> Path:
    """``OUT.manifest.json``, ``OUT.errors.jsonl``: next to the output, named after it."""
    return output.with_name(output.name + suffix)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name next to ``path``; the caller renames it into place with ``publish``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def publish(tmp: Path, path: Path) -> None:
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _jsonl_lines(rows: Rows) -> Iterator[str]:
    chunked = rows.chunk is not None
    for i, rid in enumerate(rows.ids):
        obj = {"index": i, "id": rid, "embedding": rows.vectors[i].tolist(), "tokens": int(rows.tokens[i])}
        if chunked:
            obj.update(chunk=int(rows.chunk[i]), start=int(rows.start[i]), end=int(rows.end[i]))
        yield json.dumps(obj, ensure_ascii=False) + "\n"


def _write_parquet(path: Path, rows: Rows) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n, d = rows.vectors.shape
    flat = pa.array(np.ascontiguousarray(rows.vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    cols = {"id": pa.array(rows.ids, type=pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, d)}
    if rows.chunk is not None:
        cols.update(chunk=pa.array(rows.chunk, pa.int32()), start=pa.array(rows.start, pa.int64()),
                    end=pa.array(rows.end, pa.int64()))
    pq.write_table(pa.table(cols), path, row_group_size=PARQUET_ROW_GROUP)


def write_rows(fmt: str, dest: Path | IO[str], rows: Rows) -> None:
    """Write ``rows`` to a path (npy, parquet, jsonl) or a text stream (jsonl)."""
    if fmt == "npy":
        with open(dest, "wb") as fh:
            np.save(fh, np.ascontiguousarray(rows.vectors, dtype=np.float32))
    elif fmt == "parquet":
        _write_parquet(dest, rows)
    elif fmt == "jsonl":
        with ExitStack() as stack:
            fh = dest if hasattr(dest, "write") else stack.enter_context(open(dest, "w", encoding="utf-8"))
            for line in _jsonl_lines(rows):
                fh.write(line)
    else:  # pragma: no cover - the CLI offers only these
        raise ValueError(f"unknown output format {fmt!r}")

"""Output writers (npy, jsonl, parquet), the manifest, and atomic placement of finished files.

``RowSink`` takes the rows a window at a time: Parquet gets one row group per window, JSONL a
line per row, and npy rows go to a raw float32 file that gets its header (the count is known only
at the end) when the sink is finished. Nothing grows with the corpus but the file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

__all__ = ["Rows", "OUTPUT_FORMATS", "output_format", "atomic_path", "write_rows", "sidecar", "publish",
           "RowSink", "concat_rows", "stored"]

OUTPUT_FORMATS = ("jsonl", "npy", "parquet")
PARQUET_ROW_GROUP = 65536


@dataclass
class Rows:
    """The finished output, in input order (chunks of one document in document order)."""

    ids: list[str]
    vectors: np.ndarray | None  # float32 (n, d), or codes: int8/uint8 (n, d) or packed bits (n, d/8); None without dense
    tokens: np.ndarray  # int64 (n,)
    chunk: np.ndarray | None = None  # int32 (n,) when chunking
    start: np.ndarray | None = None
    end: np.ndarray | None = None
    texts: list[str] | None = None  # with keep_text
    rescore: np.ndarray | None = None  # beside packed bits: int8 codes or float32 (n, d) to rescore with
    sparse: list | None = None  # heads.multivector.SparseVector per row (--emit sparse)
    colbert: list | None = None  # float32 (tokens - 1, d) per row (--emit colbert)
    token_vectors: list | None = None  # heads.multivector.TokenVectors per row (--emit tokens)

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


def concat_rows(parts: list[Rows], dims: int) -> Rows:
    """One Rows from several windows' (in order)."""
    cat = lambda name: (None if not parts or getattr(parts[0], name) is None  # noqa: E731
                        else np.concatenate([getattr(p, name) for p in parts]))
    join = lambda name: (None if not parts or getattr(parts[0], name) is None  # noqa: E731
                         else [x for p in parts for x in getattr(p, name)])
    vectors = cat("vectors") if parts else np.zeros((0, dims), np.float32)
    return Rows([i for p in parts for i in p.ids], vectors,
                cat("tokens") if parts else np.zeros(0, np.int64), cat("chunk"), cat("start"), cat("end"),
                join("texts"), cat("rescore"), join("sparse"), join("colbert"), join("token_vectors"))


def stored(vectors: np.ndarray) -> np.ndarray:
    """Vectors as they are written: float32, or the int8/uint8 codes unchanged (little-endian either way)."""
    if vectors.dtype in (np.int8, np.uint8):
        return np.ascontiguousarray(vectors)
    return np.ascontiguousarray(vectors, dtype="<f4")


def _extra_fields(rows: Rows, i: int) -> dict:
    """A row's outputs beyond the dense vector, in JSON: TEI's sparse shape, ColBERT vectors, token vectors."""
    out = {}
    if rows.sparse is not None:
        out["sparse"] = rows.sparse[i].to_tei()
    if rows.colbert is not None:
        out["colbert"] = rows.colbert[i].tolist()
    if rows.token_vectors is not None:
        out["token_ids"] = rows.token_vectors[i].ids.tolist()
        out["token_embeddings"] = rows.token_vectors[i].vectors.tolist()
    return out


def _jsonl_lines(rows: Rows, first: int = 0) -> Iterator[str]:
    chunked = rows.chunk is not None
    for i, rid in enumerate(rows.ids):
        obj = {"index": first + i, "id": rid}
        if rows.vectors is not None:
            obj["embedding"] = rows.vectors[i].tolist()
        obj["tokens"] = int(rows.tokens[i])
        obj.update(_extra_fields(rows, i))
        if chunked:
            obj.update(chunk=int(rows.chunk[i]), start=int(rows.start[i]), end=int(rows.end[i]))
        if rows.texts is not None:
            obj["text"] = rows.texts[i]
        yield json.dumps(obj, ensure_ascii=False) + "\n"


def _lists(parts: list[np.ndarray], dtype, width: int | None = None):
    """A Parquet list column (of fixed-size lists of ``width`` when given) from one array per row."""
    import pyarrow as pa

    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))).astype(np.int32), type=pa.int32())
    flat = np.concatenate([np.asarray(p, dtype=dtype).reshape(-1) for p in parts]) if parts else np.zeros(0, dtype)
    values = pa.array(flat.reshape(-1), type=pa.from_numpy_dtype(np.dtype(dtype)))
    if width is not None:
        values = pa.FixedSizeListArray.from_arrays(values, width)
    return pa.ListArray.from_arrays(offsets, values)


def _extra_columns(rows: Rows) -> dict:
    cols = {}
    if rows.sparse is not None:
        cols["sparse_indices"] = _lists([s.indices for s in rows.sparse], np.int32)
        cols["sparse_values"] = _lists([s.values for s in rows.sparse], np.float32)
    if rows.colbert is not None:
        width = next((c.shape[1] for c in rows.colbert), 0)
        cols["colbert"] = _lists(rows.colbert, np.float32, width)
    if rows.token_vectors is not None:
        width = next((t.vectors.shape[1] for t in rows.token_vectors), 0)
        cols["token_ids"] = _lists([t.ids for t in rows.token_vectors], np.int32)
        cols["token_embeddings"] = _lists([t.vectors for t in rows.token_vectors], np.float32, width)
    return cols


def _parquet_table(rows: Rows, d: int):
    import pyarrow as pa

    cols = {"id": pa.array(rows.ids, type=pa.string())}
    if rows.vectors is not None:
        vecs = stored(rows.vectors)
        flat = pa.array(vecs.reshape(-1), type=pa.from_numpy_dtype(vecs.dtype))
        cols["embedding"] = pa.FixedSizeListArray.from_arrays(flat, d)
    if rows.chunk is not None:
        cols.update(chunk=pa.array(rows.chunk, pa.int32()), start=pa.array(rows.start, pa.int64()),
                    end=pa.array(rows.end, pa.int64()))
    if rows.texts is not None:
        cols["text"] = pa.array(rows.texts, type=pa.string())
    if rows.rescore is not None:
        extra = stored(rows.rescore)
        cols["rescore"] = pa.FixedSizeListArray.from_arrays(pa.array(extra.reshape(-1),
                                                                     type=pa.from_numpy_dtype(extra.dtype)),
                                                            extra.shape[1])
    cols.update(_extra_columns(rows))
    return pa.table(cols)


def _write_parquet(path: Path, rows: Rows) -> None:
    import pyarrow.parquet as pq

    d = rows.vectors.shape[1] if rows.vectors is not None else 0
    pq.write_table(_parquet_table(rows, d), path, row_group_size=PARQUET_ROW_GROUP)


class RowSink:
    """Rows written a window at a time to ``dest`` (a path, or a text stream for jsonl); ``finish()``
    completes the file (the npy header), ``close()`` releases it either way."""

    def __init__(self, fmt: str, dest: Path | IO[str], dims: int, dtype=np.float32):
        self.fmt, self.dest, self.dims, self.count = fmt, dest, dims, 0
        self.dtype = np.dtype(dtype)
        self._pq = self._fh = None
        if fmt == "jsonl":
            self._fh = dest if hasattr(dest, "write") else open(dest, "w", encoding="utf-8")
            self._own = not hasattr(dest, "write")
        elif fmt == "npy":
            self._raw = Path(f"{dest}.raw")
            self._fh, self._own = open(self._raw, "wb"), True
        elif fmt != "parquet":  # pragma: no cover - the CLI offers only these
            raise ValueError(f"unknown output format {fmt!r}")

    def write(self, rows: Rows) -> None:
        if self.fmt == "jsonl":
            for line in _jsonl_lines(rows, self.count):
                self._fh.write(line)
        elif self.fmt == "npy":
            self._fh.write(stored(rows.vectors).tobytes())
        elif len(rows):
            import pyarrow.parquet as pq

            table = _parquet_table(rows, self.dims)
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.dest, table.schema)
            self._pq.write_table(table, row_group_size=PARQUET_ROW_GROUP)
        self.count += len(rows)

    def finish(self, empty: Rows | None = None) -> None:
        if self.fmt == "parquet" and self._pq is None:  # no rows at all: the schema still
            _write_parquet(self.dest, empty or Rows([], np.zeros((0, self.dims), self.dtype), np.zeros(0, np.int64)))
        self._release()
        if self.fmt == "npy":
            with open(self.dest, "wb") as out, open(self._raw, "rb") as raw:
                descr = np.lib.format.dtype_to_descr(stored(np.zeros(0, self.dtype)).dtype)
                np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False,
                                                           "shape": (self.count, self.dims)})
                shutil.copyfileobj(raw, out, 16 << 20)
            self._raw.unlink()

    def _release(self) -> None:
        if self._pq is not None and self._pq is not False:
            self._pq.close()
            self._pq = False  # written (and closed)
        if self._fh is not None:
            if self._own:
                self._fh.close()
            elif hasattr(self._fh, "flush"):
                self._fh.flush()
            self._fh = None

    def close(self) -> None:
        self._release()
        if self.fmt == "npy":
            self._raw.unlink(missing_ok=True)


def write_rows(fmt: str, dest: Path | IO[str], rows: Rows) -> None:
    """Write ``rows`` to a path (npy, parquet, jsonl) or a text stream (jsonl)."""
    if fmt == "npy":
        with open(dest, "wb") as fh:
            np.save(fh, stored(rows.vectors))
    elif fmt == "parquet":
        _write_parquet(dest, rows)
    elif fmt == "jsonl":
        with ExitStack() as stack:
            fh = dest if hasattr(dest, "write") else stack.enter_context(open(dest, "w", encoding="utf-8"))
            for line in _jsonl_lines(rows):
                fh.write(line)
    else:  # pragma: no cover - the CLI offers only these
        raise ValueError(f"unknown output format {fmt!r}")

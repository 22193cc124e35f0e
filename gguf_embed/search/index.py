"""An index written by ``gguf-embed encode ... -o OUT.parquet``: the Parquet of vectors and its manifest,
checked to agree, read in bounded batches (the stored rows as they are, or as float32 unit vectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..choices import PRECISIONS
from ..errors import SearchError
from ..heads.pooling import l2_normalize
from ..heads.precision import code_dtype, code_width, dequantize, ranges_digest

__all__ = ["SearchIndex", "SearchError", "check_count", "man_name", "stored_precision", "SCORE_BLOCK",
           "MIN_BATCH_ROWS", "MAX_BATCH_ROWS"]

SCORE_BLOCK = 1 << 24  # query x row scores held at once (64 MiB of float32)
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 1024, 8192
READ_BUFFER = 1 << 20  # the Parquet is streamed through a buffer this size, never read whole
MANIFEST_SUFFIX = ".manifest.json"
META_COLUMNS = ("id", "chunk", "start", "end", "text")


def check_count(value, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise SearchError(f"{name} must be a positive integer (got {value!r})", param=name)


class SearchIndex:
    """A Parquet of vectors and its manifest, checked to agree; vectors are read in batches."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise SearchError(f"no index at {self.path} (make one with: gguf-embed encode FILES -m MODEL -o "
                              f"{self.path.name})")
        self.manifest = _read_manifest(self.path)
        try:
            # no pre-buffering: pyarrow would otherwise fetch every row group's column chunks up front
            self._pf = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=READ_BUFFER)
        except (pa.ArrowException, OSError) as exc:
            raise SearchError(f"{self.path} is not a Parquet file: {str(exc).splitlines()[0]}") from None
        schema = self._pf.schema_arrow
        etype = schema.field("embedding").type if "embedding" in schema.names else None
        self.precision, self.codebook = stored_precision(self.manifest, man_name(self.path))
        want = pa.from_numpy_dtype(code_dtype(self.precision))
        if "id" not in schema.names or etype is None or not pa.types.is_fixed_size_list(etype) \
                or etype.value_type != want:
            raise SearchError(f"{self.path} has no 'id' and fixed-size {want} 'embedding' columns "
                              "(not written by gguf-embed encode)")
        self.width = etype.list_size  # values per row: the dimensions, or bytes of packed bits
        self.dims = self.manifest.get("dimensions")
        self.columns = [c for c in META_COLUMNS if c in schema.names]
        if not isinstance(self.dims, int) or code_width(self.precision, self.dims) != self.width:
            raise SearchError(f"{self.path} holds {self.width}-value {self.precision} rows but its manifest says "
                              f"{self.dims} dimensions; the two files are from different runs")
        r = self.manifest.get("rescore") or {}  # int8 codes or floats beside packed bits
        self.rescore = stored_precision({"precision": r.get("precision"), "quantization": r}, man_name(self.path)) \
            if "rescore" in schema.names else None
        meta = self._pf.metadata
        self.n_rows = meta.num_rows
        self._group_starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])

    @property
    def normalized(self) -> bool:
        return bool(self.manifest.get("normalized", True))

    def code_batches(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, the stored rows as they are: float32, int8/uint8 codes or packed bits)."""
        offset = 0
        for batch in self._pf.iter_batches(batch_size=rows, columns=["embedding"]):
            col = batch.column(0)
            yield offset, col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), self.width)
            offset += len(col)

    def batches(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 (n, dims) unit vectors) over the whole index, ``rows`` at a time: codes
        are dequantised (bucket centres, or +1/-1 per bit) and normalised."""
        for offset, vecs in self.code_batches(rows):
            if self.precision != "float":
                vecs = l2_normalize(dequantize(vecs, self.precision, dims=self.dims, **self.codebook))
            yield offset, (vecs if self.normalized or self.precision != "float" else l2_normalize(vecs))

    def rows(self, positions: Sequence[int]) -> dict[int, dict]:
        """The id (and chunk, start, end, text where stored) of each row in ``positions``."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        groups = np.searchsorted(self._group_starts, positions, side="right") - 1
        out: dict[int, dict] = {}
        for g in np.unique(groups):
            mine = positions[groups == g]
            table = self._pf.read_row_group(int(g), columns=self.columns).take(mine - self._group_starts[g])
            for pos, rec in zip(mine.tolist(), table.to_pylist()):
                out[pos] = rec
        return out

    def read_at(self, positions: np.ndarray, column: str) -> np.ndarray:
        """The rows of a fixed-size list column (``embedding``, ``rescore``) at ``positions``, in that order."""
        uniq, inverse = np.unique(np.asarray(positions, dtype=np.int64), return_inverse=True)
        groups = np.searchsorted(self._group_starts, uniq, side="right") - 1
        parts = []
        for g in np.unique(groups):
            col = self._pf.read_row_group(int(g), columns=[column]).column(0)
            col = col.take(uniq[groups == g] - self._group_starts[g]).combine_chunks()
            parts.append(col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size))
        return np.concatenate(parts)[inverse.ravel()]


def _read_manifest(path: Path) -> dict:
    man = path.with_name(path.name + MANIFEST_SUFFIX)
    if not man.is_file():
        raise SearchError(f"{path} has no manifest ({man.name} is missing); search needs the one gguf-embed encode "
                          "writes next to its output")
    try:
        manifest = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SearchError(f"cannot read {man}: {exc}") from None
    missing = [k for k in ("model_sha256", "dimensions") if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise SearchError(f"{man} is not a gguf-embed manifest (no {', '.join(missing)})")
    if manifest.get("format", "parquet") != "parquet":
        raise SearchError(f"{man} describes a {manifest['format']} output; search reads Parquet indexes")
    return manifest


def man_name(path: Path) -> str:
    return path.name + MANIFEST_SUFFIX


def stored_precision(manifest: dict, name: str) -> tuple[str, dict]:
    """The precision an index was written in, and how its int8/uint8 codes map back to floats:
    ``{"scale": ...}`` (symmetric) or ``{"ranges": ...}`` (per-dimension, checked against their sha256)."""
    precision = manifest.get("precision", "float")
    if precision not in PRECISIONS:
        raise SearchError(f"{name} names an unknown precision {precision!r}")
    if precision not in ("int8", "uint8"):
        return precision, {}
    q = manifest.get("quantization") or {}
    if q.get("scheme", "per-dimension") == "symmetric":
        scale = q.get("scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
            raise SearchError(f"{name} has no readable {precision} scale (quantization.scale)")
        return precision, {"scale": np.float32(scale)}
    try:
        ranges = np.array([q["ranges"]["min"], q["ranges"]["max"]], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        raise SearchError(f"{name} has no readable {precision} ranges (quantization.ranges)") from None
    if ranges_digest(ranges) != q.get("ranges_sha256"):
        raise SearchError(f"{name}: the {precision} ranges do not match their ranges_sha256; the manifest was edited")
    return precision, {"ranges": ranges}

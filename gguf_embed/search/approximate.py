"""Approximate search through FAISS: an inner-product index built next to the Parquet
(``OUT.parquet.faiss``) on the first request and reused while the Parquet is unchanged.

``OUT.parquet.faiss.json`` records the Parquet's size, mtime and sha256 and the index's kind
and parameters: same size and mtime, the index is reused at once; same size but another
mtime (a copy, a touch), the sha256 decides; anything else builds it again.
FAISS is optional: ``pip install 'gguf-embed[faiss]'``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .. import choices
from ..heads.pooling import l2_normalize
from ..store.cache import sha256_file
from .index import SearchError, SearchIndex

__all__ = ["faiss_top_k", "open_faiss", "ann_paths", "HNSW_M", "HNSW_EF_CONSTRUCTION"]

HNSW_M = 32  # graph neighbours per vector
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 128  # at least; 2k for larger k
IVF_TRAIN_PER_LIST = 64  # training vectors per inverted list
BUILD_ROWS = 8192


def _faiss():
    try:
        import faiss
    except ImportError:
        raise SearchError("approximate search needs FAISS: pip install 'gguf-embed[faiss]' (or faiss-cpu)") from None
    return faiss


def ann_paths(index: SearchIndex) -> tuple[Path, Path]:
    return index.path.with_name(index.path.name + ".faiss"), index.path.with_name(index.path.name + ".faiss.json")


def _ivf_lists(n: int) -> int:
    return int(max(1, min(round(4 * math.sqrt(n)), n // IVF_TRAIN_PER_LIST or 1)))


def _train_sample(index: SearchIndex, size: int) -> np.ndarray:
    """About ``size`` vectors spread evenly over the whole index (one streaming pass)."""
    stride = max(1, index.n_rows // size)
    parts = [block[(-offset) % stride::stride].copy() for offset, block in index.batches(BUILD_ROWS)]  # not views
    return np.ascontiguousarray(np.concatenate(parts)[:size])


def _build(index: SearchIndex, kind: str):
    faiss = _faiss()
    d = index.dims
    if kind == "hnsw":
        ann = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        ann.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    else:
        nlist = _ivf_lists(index.n_rows)
        ann = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        ann.train(_train_sample(index, nlist * IVF_TRAIN_PER_LIST))
        params = {"nlist": nlist}
    for _, block in index.batches(BUILD_ROWS):
        ann.add(np.ascontiguousarray(block))
    return ann, params


def _fingerprint(path: Path, sha: str | None = None) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha or sha256_file(path)}


def _reusable(index: SearchIndex, kind: str, meta_path: Path, ann_path: Path) -> dict | None:
    """The sidecar if the index file on disk was built from this very Parquet (else None)."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not ann_path.is_file() or meta.get("kind") != kind or meta.get("dims") != index.dims \
            or meta.get("rows") != index.n_rows:
        return None
    st = index.path.stat()
    parquet = meta.get("parquet") or {}
    if parquet.get("size") != st.st_size:
        return None
    if parquet.get("mtime_ns") == st.st_mtime_ns:
        return meta
    if parquet.get("sha256") == sha256_file(index.path):  # the same bytes with another mtime
        meta["parquet"] = _fingerprint(index.path, parquet["sha256"])
        _write_json(meta_path, meta)
        return meta
    return None


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def open_faiss(index: SearchIndex, kind: str = "hnsw", *, rebuild: bool = False):
    """(FAISS index, sidecar dict): the one beside the Parquet if it is current, else built now and saved."""
    if kind not in choices.FAISS_INDEXES:
        raise SearchError(f"unknown FAISS index kind {kind!r} (one of {', '.join(choices.FAISS_INDEXES)})")
    faiss = _faiss()
    ann_path, meta_path = ann_paths(index)
    meta = None if rebuild else _reusable(index, kind, meta_path, ann_path)
    if meta is not None:
        return faiss.read_index(str(ann_path)), meta
    before = _fingerprint(index.path)
    ann, params = _build(index, kind)
    tmp = ann_path.with_name(f".{ann_path.name}.{os.getpid()}.part")  # another process may build it too
    faiss.write_index(ann, str(tmp))
    os.replace(tmp, ann_path)
    meta = {"kind": kind, "params": params, "dims": index.dims, "rows": index.n_rows, "parquet": before}
    _write_json(meta_path, meta)
    return ann, meta


def faiss_top_k(index: SearchIndex, queries: np.ndarray, k: int, *, kind: str = "hnsw", probe: int | None = None,
                rebuild: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) like ``top_k_exact``; rows of -1 where the index found fewer than ``k``.
    ``probe``: efSearch (hnsw) or nprobe (ivf); the default favours recall."""
    ann, meta = open_faiss(index, kind, rebuild=rebuild)
    q = np.ascontiguousarray(l2_normalize(np.atleast_2d(np.asarray(queries, dtype=np.float32))))
    if q.shape[1] != index.dims:
        raise SearchError(f"query vectors have {q.shape[1]} dims, the index {index.dims}")
    k = min(k, index.n_rows)
    if kind == "hnsw":
        ann.hnsw.efSearch = probe or max(HNSW_EF_SEARCH, 2 * k)
    else:
        ann.nprobe = probe or max(16, meta["params"]["nlist"] // 32)
    scores, rows = ann.search(q, k)
    return scores.astype(np.float32), rows.astype(np.int64)

"""Exact search: the Parquet's vectors streamed in bounded batches, a running top-k per query, so memory
does not grow with the index; scores are dot products of unit vectors (cosines), equal scores in row order."""

from __future__ import annotations

import numpy as np

from ..heads.pooling import l2_normalize
from .index import MIN_BATCH_ROWS, MAX_BATCH_ROWS, SCORE_BLOCK, SearchError, SearchIndex

__all__ = ["top_k_exact"]


def _scan(index: SearchIndex, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    best_s, best_r = np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    rows = int(np.clip(SCORE_BLOCK // max(len(q), 1), MIN_BATCH_ROWS, MAX_BATCH_ROWS))
    for offset, block in index.batches(rows):
        s = np.concatenate([best_s, q @ block.T], axis=1)
        r = np.concatenate([best_r, np.broadcast_to(np.arange(offset, offset + len(block)), (len(q), len(block)))],
                           axis=1)
        if s.shape[1] > k:
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
            s, r = np.take_along_axis(s, part, 1), np.take_along_axis(r, part, 1)
        best_s, best_r = s, r
    order = np.lexsort((best_r, -best_s), axis=-1)  # best first; equal scores in row order
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_r, order, 1)


def top_k_exact(index: SearchIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows), each (n_queries, min(k, rows)), best first: dot products with unit vectors."""
    q = l2_normalize(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if q.shape[1] != index.dims:
        raise SearchError(f"query vectors have {q.shape[1]} dims, the index {index.dims}")
    k = min(k, index.n_rows)
    group = max(1, SCORE_BLOCK // MIN_BATCH_ROWS)  # more queries than this: one pass over the file per group
    parts = [_scan(index, q[a:a + group], k) for a in range(0, len(q), group)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

"""Search over packed bits (``encode --precision binary|ubinary``): Hamming distance, then rescoring.

The query's sign bits are compared with every row's by popcount, streaming the Parquet in
batches and keeping each query's ``rescore * k`` nearest rows; those are then scored by the float
query against the rows' stored rescore vectors (``encode --rescore-vectors int8|float``: read only
for the candidates) or, without them, against the rows' +1/-1 vectors (the dot product over
sqrt(d): the cosine between the query and the row's sign vector), as sentence-transformers'
rescoring does, and the best ``k`` kept. Memory holds the candidates, never the index.
"""

from __future__ import annotations

import numpy as np

from ..heads.pooling import l2_normalize
from ..heads.precision import dequantize, hamming, pack_bits, unpack_signs
from .index import MAX_BATCH_ROWS, SearchError, SearchIndex

__all__ = ["top_k_hamming", "DEFAULT_RESCORE"]

DEFAULT_RESCORE = 10  # candidates per result rescored with the float query (docs/guides/compressed-vectors.md)


def _as_unsigned(codes: np.ndarray) -> np.ndarray:
    return (codes.astype(np.int16) + 128).astype(np.uint8) if codes.dtype == np.int8 else codes


def _candidates(index: SearchIndex, qbits: np.ndarray, n: int) -> np.ndarray:
    """rows (q, n): each query's ``n`` nearest by Hamming distance, ties in row order."""
    nq = len(qbits)
    best_d, best_r = np.zeros((nq, 0), np.int32), np.zeros((nq, 0), np.int64)
    for offset, block in index.code_batches(MAX_BATCH_ROWS):
        d = np.concatenate([best_d, hamming(qbits, _as_unsigned(block))], axis=1)
        r = np.concatenate([best_r, np.broadcast_to(np.arange(offset, offset + len(block)), (nq, len(block)))], axis=1)
        if d.shape[1] > n:
            keep = np.lexsort((r, d), axis=-1)[:, :n]
            d, r = np.take_along_axis(d, keep, 1), np.take_along_axis(r, keep, 1)
        best_d, best_r = d, r
    return best_r


def top_k_hamming(index: SearchIndex, queries: np.ndarray, k: int, rescore: int = DEFAULT_RESCORE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows), each (n_queries, min(k, rows)), best first: Hamming candidates rescored."""
    q = l2_normalize(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if q.shape[1] != index.dims:
        raise SearchError(f"query vectors have {q.shape[1]} dims, the index {index.dims}")
    k = min(k, index.n_rows)
    rows = _candidates(index, pack_bits(q), min(index.n_rows, k * rescore))
    shape = (len(q), rows.shape[1], index.dims)
    if index.rescore is not None:  # the int8 codes or floats stored beside the bits
        precision, codebook = index.rescore
        vecs = l2_normalize(dequantize(index.read_at(rows.ravel(), "rescore"), precision, **codebook))
        scores = np.einsum("qd,qnd->qn", q, vecs.reshape(shape))
    else:
        signs = unpack_signs(index.read_at(rows.ravel(), "embedding"), index.dims).reshape(shape)
        scores = np.einsum("qd,qnd->qn", q, signs) / np.float32(np.sqrt(index.dims))
    order = np.lexsort((rows, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1).astype(np.float32), np.take_along_axis(rows, order, 1)

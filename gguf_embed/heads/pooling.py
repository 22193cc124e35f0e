"""Pooling, Matryoshka cut and normalisation: pure numpy, arrays in, arrays out."""

from __future__ import annotations

import numpy as np

from ..choices import POOLINGS

__all__ = ["POOLINGS", "needed_rows", "pool", "pool_picked", "cut_dimensions", "l2_normalize", "postprocess", "cosine",
           "row_cosines", "p_normalize"]


def needed_rows(lengths: np.ndarray, pooling: str) -> np.ndarray | None:
    """Token positions (in the concatenated sequences) that pooling reads; None for all."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if pooling == "mean":
        return None
    ends = np.cumsum(lengths)
    if pooling == "last":
        return ends - 1
    if pooling == "cls":
        return ends - lengths
    raise ValueError(f"unknown pooling {pooling!r}")


def pool(hidden: np.ndarray, lengths: np.ndarray, pooling: str) -> np.ndarray:
    """Pool the rows that ``needed_rows`` selected into one vector per sequence.

    For ``cls`` and ``last`` ``hidden`` already holds one row per sequence; for ``mean``
    it holds every token's row, sequences one after another.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if pooling in ("cls", "last"):
        if hidden.shape[0] != len(lengths):
            raise ValueError("expected one output row per sequence")
        return hidden.astype(np.float32, copy=False)
    if pooling != "mean":
        raise ValueError(f"unknown pooling {pooling!r}")
    if np.any(lengths <= 0):
        raise ValueError("empty sequence")
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    sums = np.add.reduceat(hidden.astype(np.float64, copy=False), starts, axis=0)
    return (sums / lengths[:, None]).astype(np.float32)


def pool_picked(passes: list[np.ndarray], picks: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Late chunking: for each (pass, row indices), the mean of those token rows of that pass."""
    out = np.empty((len(picks), passes[0].shape[1] if passes else 0), dtype=np.float32)
    for i, (w, rows) in enumerate(picks):
        out[i] = passes[w][rows].astype(np.float64).mean(axis=0)
    return out


def cut_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Matryoshka cut: keep the first ``dimensions`` components."""
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    return np.ascontiguousarray(vectors[:, :dimensions])


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12, dtype=np.float32) -> np.ndarray:
    """The one L2 normaliser: every row to unit length (zero rows stay zero)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=dtype))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, eps)).astype(dtype, copy=False)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b`` (float64)."""
    return (l2_normalize(a, dtype=np.float64) * l2_normalize(b, dtype=np.float64)).sum(axis=1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors; 0 when either is zero."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denom if denom > 0 else 0.0


def postprocess(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """The one place vectors are cut and normalised."""
    out = cut_dimensions(vectors, dimensions)
    return l2_normalize(out) if normalize else np.ascontiguousarray(out, dtype=np.float32)


INT16_SCALE = 32760.0  # llama.cpp's embd_normalize 0: the largest component scaled to this


def p_normalize(vectors: np.ndarray, p: int) -> np.ndarray:
    """Rows scaled as llama.cpp's ``embd_normalize`` asks: -1 unchanged, 0 the largest absolute component
    to 32760 (an int16 range), 1 unit taxicab length, 2 unit euclidean length, p > 2 unit p-norm. A zero
    row stays zero."""
    if p == 2:
        return l2_normalize(vectors)
    rows = np.asarray(vectors, dtype=np.float64)
    if p == -1:
        return rows.astype(np.float32)
    peak = np.abs(rows).max(axis=1) if rows.size else np.zeros(len(rows))
    if p == 0:
        size = peak / INT16_SCALE
    else:  # the p-norm computed on rows divided by their peak, so that a large p cannot overflow
        safe = np.where(peak > 0, peak, 1.0)
        size = peak * ((np.abs(rows) / safe[:, None]) ** p).sum(axis=1) ** (1.0 / p)
    scale = np.divide(1.0, size, out=np.zeros_like(size), where=size > 0)
    return (rows * scale[:, None]).astype(np.float32)

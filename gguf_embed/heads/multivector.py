"""Outputs beyond one vector per text, from every token's hidden state: bge-m3's sparse lexical
weights and ColBERT multi-vectors, token-level vectors, and the scores hybrid retrieval combines.
Pure numpy, arrays in, arrays out.

The rules are FlagEmbedding's (``FlagEmbedding/finetune/embedder/encoder_only/m3/modeling.py`` and
``FlagEmbedding/inference/embedder/encoder_only/m3.py``):

* sparse: ``relu(sparse_linear(h_t))`` per token; per token id the largest weight; ids of the
  tokenizer's CLS, EOS, PAD and UNK tokens dropped, and weights that are not above zero;
* ColBERT: ``colbert_linear(h_t)`` for every token but the first (the EOS included), each
  L2-normalised when the embeddings are;
* lexical score: the sum over the ids both texts have of ``q_w * d_w``;
* ColBERT score (MaxSim): for each query vector its largest dot product with the document's
  vectors, summed and divided by the number of query vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from .pooling import l2_normalize, needed_rows, pool, postprocess

__all__ = ["Head", "SparseVector", "TokenVectors", "sparse_vector", "colbert_vectors", "token_vectors",
           "pool_tokens", "dense_score", "lexical_score", "colbert_score"]


@dataclass(frozen=True)
class Head:
    """A linear head ``h -> weight @ h + bias``: ``weight`` (out, in) float32, ``bias`` (out,)."""

    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        h = np.asarray(hidden, dtype=np.float32)
        return (h @ self.weight.T + self.bias).astype(np.float32, copy=False)


@dataclass(frozen=True)
class SparseVector:
    """Token id -> weight, ids ascending (TEI's ``[{"index", "value"}]`` in that order)."""

    indices: np.ndarray  # int64 (k,)
    values: np.ndarray  # float32 (k,)

    def to_dict(self) -> dict[int, float]:
        return {int(i): float(v) for i, v in zip(self.indices, self.values)}

    def to_tei(self) -> list[dict]:
        return [{"index": int(i), "value": float(v)} for i, v in zip(self.indices, self.values)]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class TokenVectors:
    """Every token of one framed input: its id and its vector (special tokens included)."""

    ids: np.ndarray  # int32 (n,)
    vectors: np.ndarray  # float32 (n, d)


def sparse_vector(hidden: np.ndarray, ids: np.ndarray, head: Head, skip_ids: Iterable[int]) -> SparseVector:
    """bge-m3's lexical weights of one text: ``hidden`` (n, d) token states, ``ids`` (n,) its token ids."""
    ids = np.asarray(ids, dtype=np.int64)
    w = np.maximum(head(hidden)[:, 0], 0.0)
    keep = (w > 0) & ~np.isin(ids, np.fromiter(skip_ids, dtype=np.int64))
    ids, w = ids[keep], w[keep]
    if not len(ids):
        return SparseVector(np.zeros(0, np.int64), np.zeros(0, np.float32))
    uniq, inverse = np.unique(ids, return_inverse=True)
    best = np.zeros(len(uniq), dtype=np.float32)
    np.maximum.at(best, inverse, w)
    return SparseVector(uniq, best)


def colbert_vectors(hidden: np.ndarray, head: Head, normalize: bool = True) -> np.ndarray:
    """bge-m3's multi-vectors of one text: the head on every token but the first, (n - 1, out)."""
    out = head(np.asarray(hidden)[1:])
    return l2_normalize(out) if normalize and len(out) else np.ascontiguousarray(out, dtype=np.float32)


def token_vectors(hidden: np.ndarray, ids: np.ndarray, dimensions: int | None = None,
                  normalize: bool = True) -> TokenVectors:
    """Each token's vector, cut and normalised as pooled vectors are."""
    return TokenVectors(np.asarray(ids, dtype=np.int32), postprocess(np.asarray(hidden), dimensions, normalize))


def pool_tokens(hidden: list[np.ndarray], pooling: str, n_embd: int) -> np.ndarray:
    """The pooled rows (n, n_embd) of per-sequence token states, as the model's pooling reads them."""
    if not hidden:
        return np.zeros((0, n_embd), np.float32)
    lengths = np.array([len(h) for h in hidden], dtype=np.int64)
    if pooling == "mean":
        return pool(np.concatenate(hidden), lengths, "mean")
    rows = needed_rows(lengths, pooling)
    return np.concatenate(hidden)[rows].astype(np.float32, copy=False)


def dense_score(q: np.ndarray, d: np.ndarray) -> float:
    """Dot product of two (normalised) dense vectors."""
    return float(np.dot(np.asarray(q, np.float64), np.asarray(d, np.float64)))


def _as_dict(s: SparseVector | Mapping) -> Mapping:
    return s.to_dict() if isinstance(s, SparseVector) else {int(k): float(v) for k, v in s.items()}


def lexical_score(q: SparseVector | Mapping, d: SparseVector | Mapping) -> float:
    """bge-m3's lexical matching score: sum over the shared token ids of ``q_w * d_w``."""
    q, d = _as_dict(q), _as_dict(d)
    return float(sum(w * d[i] for i, w in q.items() if i in d))


def colbert_score(q: np.ndarray, d: np.ndarray) -> float:
    """MaxSim: the mean over the query's vectors of the largest dot product with a document vector."""
    q, d = np.asarray(q, np.float64), np.asarray(d, np.float64)
    if not len(q) or not len(d):
        return 0.0
    return float((q @ d.T).max(axis=1).sum() / len(q))

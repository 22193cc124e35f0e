"""Ranked rows as hits: from any scan (exact, Hamming over packed bits, FAISS), and rescored by a reranker."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .approximate import faiss_top_k
from .exact import top_k_exact
from .hamming import DEFAULT_RESCORE, top_k_hamming
from .index import SearchIndex, check_count

__all__ = ["Hit", "hits_of", "search_vectors", "rerank_hits"]


@dataclass(frozen=True)
class Hit:
    """One result: ``score`` is the cosine, or the reranker's score (then ``similarity`` is the cosine)."""

    rank: int
    id: str
    score: float
    row: int  # the row in the Parquet
    chunk: int | None = None
    start: int | None = None
    end: int | None = None
    text: str | None = None
    similarity: float | None = None

    def to_json(self, query: int | None = None) -> dict:
        out = {} if query is None else {"query": query}
        out.update(rank=self.rank, id=self.id, score=self.score)
        if self.similarity is not None:
            out["similarity"] = self.similarity
        for key in ("chunk", "start", "end", "text"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def hits_of(index: SearchIndex, scores: np.ndarray, rows: np.ndarray) -> list[list[Hit]]:
    meta = index.rows(rows[rows >= 0].ravel())
    out = []
    for s_row, r_row in zip(scores, rows):
        block = []
        for s, r in zip(s_row.tolist(), r_row.tolist()):
            if r < 0:  # an approximate index found fewer than k
                continue
            m = meta[r]
            block.append(Hit(len(block) + 1, m["id"], float(s), r, m.get("chunk"), m.get("start"), m.get("end"),
                             m.get("text")))
        out.append(block)
    return out


def search_vectors(index: SearchIndex | str | Path, queries: np.ndarray, top_k: int = 10, *,
                   faiss: str | None = None, probe: int | None = None, rescore: int | None = None) -> list[list[Hit]]:
    """Search with query vectors already in the index's space; ``faiss``: an index kind (hnsw, ivf).
    A binary index is searched by Hamming distance, its ``rescore`` x ``top_k`` nearest rescored
    with the float queries (``search.hamming``)."""
    index = index if isinstance(index, SearchIndex) else SearchIndex(index)
    check_count(top_k, "top_k")
    check_count(rescore, "rescore")
    if index.n_rows == 0:
        return [[] for _ in np.atleast_2d(queries)]
    if faiss is None and index.precision.endswith("binary"):
        scores, rows = top_k_hamming(index, queries, top_k, rescore or DEFAULT_RESCORE)
    elif faiss is not None:
        scores, rows = faiss_top_k(index, queries, top_k, kind=faiss, probe=probe)
    else:
        scores, rows = top_k_exact(index, queries, top_k)
    return hits_of(index, scores, rows)


def rerank_hits(query: str, hits: list[Hit], reranker, top_n: int | None = None, instruction: str | None = None,
                truncate: str = "end") -> list[Hit]:
    """``hits`` rescored by ``reranker``, best first; ``similarity`` keeps the recall cosine."""
    ranked = reranker.rerank(query, [h.text for h in hits], top_n, instruction, truncate=truncate)
    return [replace(hits[i], rank=r, score=float(s), similarity=hits[i].score) for r, (i, s) in enumerate(ranked, 1)]

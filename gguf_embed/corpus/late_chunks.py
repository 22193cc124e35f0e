"""Late chunking in corpus jobs: each document's chunks from one pass over it (``--late-chunking``).

A late-chunked vector depends on the whole document (and on where the other chunks fall,
which decides the passes of a long one), not on the chunk's text alone, so its cache key is
the sha256 of the document's text with the chunk's character span, and the cache space adds
``late_chunking``, ``chunk_tokens`` and ``chunk_overlap`` to the settings that key ordinary
vectors. The same document chunked the same way is embedded once (dedupe and resume work as
for ordinary rows); an ordinary chunk vector is never taken for a late one, nor the reverse.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..embedder import Embedder
from ..errors import NonFiniteOutputError
from ..store.lookup import Backend, Batch
from .spec import NON_FINITE, JobSpec

__all__ = ["LateUnit", "span_key", "late_backend"]

UNITS_PER_BATCH = 128  # chunks per committed batch (whole documents; at least one)


@dataclass(frozen=True)
class LateUnit:
    """One output row: chunk ``chunk`` of a document whose chunks are ``spans``."""

    text: str
    spans: tuple[tuple[int, int], ...]
    chunk: int


def span_key(text: str, start: int, end: int) -> bytes:
    """The cache key of a late-chunked vector: the document's text and the chunk's span."""
    h = hashlib.sha256(f"late-chunk {start} {end}\n".encode())
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.digest()


def _documents(units: Sequence[LateUnit]) -> list[tuple[LateUnit, list[int]]]:
    """Consecutive units of the same document, grouped: (one of them, their positions)."""
    out: list[tuple[LateUnit, list[int]]] = []
    for i, u in enumerate(units):
        if out and out[-1][0].spans is u.spans and out[-1][0].text is u.text:
            out[-1][1].append(i)
        else:
            out.append((u, [i]))
    return out


def _embed(emb: Embedder, spec: JobSpec, docs: list[tuple[LateUnit, list[int]]], units: Sequence[LateUnit]):
    results = emb.embed_late_chunks_many([u.text for u, _ in docs], [u.spans for u, _ in docs],
                                         input_type=spec.input_type, instruction=spec.instruction,
                                         dimensions=spec.dimensions, normalize=spec.normalize,
                                         batch_invariant=spec.batch_invariant)
    pos, vecs, toks = [], [], []
    for (_, members), res in zip(docs, results):
        for i in members:
            pos.append(i)
            vecs.append(res.embeddings[units[i].chunk])
            toks.append(res.token_counts[units[i].chunk])
    return pos, vecs, toks


def late_backend(emb: Embedder, spec: JobSpec, *, retry_bad: bool = True) -> Backend:
    """Late-chunked vectors for ``LateUnit`` rows, whole documents per batch. A document whose
    pass gives a vector that is not finite is set aside (with ``retry_bad``, the others of its
    batch are embedded one document at a time)."""
    dims = spec.dimensions or emb.dimensions

    def batch(docs, units, bad) -> Batch:
        try:
            pos, vecs, toks = _embed(emb, spec, docs, units)
        except NonFiniteOutputError:
            if not retry_bad or len(docs) == 1:
                bad.update({i: NON_FINITE for _, members in docs for i in members})
                return Batch(np.zeros(0, np.int64), np.zeros((0, dims), np.float32), np.zeros(0, np.int64), bad)
            parts = [batch([d], units, {}) for d in docs]
            return Batch(np.concatenate([p.positions for p in parts]), np.concatenate([p.vectors for p in parts]),
                         np.concatenate([p.tokens for p in parts]), {k: v for p in parts for k, v in p.bad.items()})
        return Batch(np.array(pos, np.int64), np.array(vecs, np.float32).reshape(len(pos), dims),
                     np.array(toks, np.int64), bad)

    def encode(units: Sequence[LateUnit]) -> Iterator[Batch]:
        docs = _documents(units)
        group, n = [], 0
        for d in docs:
            group.append(d)
            n += len(d[1])
            if n >= min(spec.window, UNITS_PER_BATCH):
                yield batch(group, units, {})
                group, n = [], 0
        if group:
            yield batch(group, units, {})

    return encode

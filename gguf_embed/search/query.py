"""The query side of a search: the index's model (found by its manifest and checked to be the one that
made it), queries embedded in the index's space, the scan, and reranking of the hits.

    from gguf_embed.search import search

    for hit in search("vectors.parquet", "how do plants make energy?", top_k=5)[0]:
        print(hit.rank, hit.score, hit.id)
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np

from ..embedder import Embedder
from ..errors import GGUFEmbedError
from ..model.sources import resolve_model
from ..registry import default_models_dir
from ..reranker import Reranker
from ..store.cache import remembered_sha256
from .hits import Hit, rerank_hits, search_vectors
from .index import SearchError, SearchIndex, check_count
from .texts import fill_texts

__all__ = ["search", "index_model", "check_embedder", "embed_queries", "model_sha256"]


model_sha256 = remembered_sha256


def index_model(index: SearchIndex, models_dir: str | Path | None = None) -> Path:
    """The GGUF that made ``index``: its ``model_file`` in the models dir or beside the index, else its model name."""
    m = index.manifest
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    name, file = m.get("model"), m.get("model_file")
    for candidate in ([folder / file, index.path.parent / file] if file else []):
        if candidate.is_file():
            return candidate
    if name:
        try:
            return resolve_model(name, models_dir=folder)
        except GGUFEmbedError:
            pass
    raise SearchError(f"cannot find the model that made {index.path.name} ({name!r}, file {file!r}, looked in "
                      f"{folder}); give it with -m")


def check_embedder(emb, index: SearchIndex) -> None:
    """Refuse a model whose vectors are not in the index's space (another file, pooling or size)."""
    m = index.manifest
    sha = model_sha256(emb.info.path)
    if sha != m["model_sha256"]:
        raise SearchError(f"{emb.info.path.name} (sha256 {sha[:12]}) is not the model file that made "
                          f"{index.path.name} ({m.get('model_file')}, sha256 {m['model_sha256'][:12]}); "
                          "its vectors are in another space")
    if m.get("pooling") not in (None, emb.info.pooling):
        raise SearchError(f"{index.path.name} was made with {m['pooling']} pooling, the model now pools by "
                          f"{emb.info.pooling}")
    if index.dims > emb.dimensions:
        raise SearchError(f"{index.path.name} holds {index.dims}-dim vectors, more than {emb.info.path.name} gives")


def embed_queries(emb, index: SearchIndex, queries: Sequence[str], instruction: str | None = None) -> np.ndarray:
    """The queries as unit vectors in the index's space (the model's query prompt, the index's dimensions)."""
    dims = index.dims if index.dims != emb.dimensions else None
    return emb.embed(list(queries), input_type="query", instruction=instruction, dimensions=dims,
                     normalize=True, truncate=index.manifest.get("truncate") or "error").embeddings


def search(index: SearchIndex | str | Path, queries: str | Sequence[str], embedder=None, top_k: int = 10,
           reranker=None, top_n: int | None = None, *, instruction: str | None = None,
           rerank_instruction: str | None = None, faiss: str | None = None, probe: int | None = None,
           rescore: int | None = None,
           models_dir: str | Path | None = None) -> list[list[Hit]]:
    """One block of hits per query, best first. ``embedder``: an open Embedder (default: the index's
    model, found by its manifest); ``reranker``: a Reranker or a model for one, rescoring the top-k
    and keeping ``top_n``; ``faiss``: approximate search with that FAISS index kind."""
    index = index if isinstance(index, SearchIndex) else SearchIndex(index)
    queries = [queries] if isinstance(queries, str) else list(queries)
    check_count(top_k, "top_k")
    check_count(top_n, "top_n")
    if not queries or not all(isinstance(q, str) and q.strip() for q in queries):
        raise SearchError("give at least one query, each a non-empty string", param="queries")
    with ExitStack() as stack:
        emb = embedder or stack.enter_context(Embedder(index_model(index, models_dir)))
        check_embedder(emb, index)
        vectors = embed_queries(emb, index, queries, instruction)
        blocks = search_vectors(index, vectors, top_k, faiss=faiss, probe=probe, rescore=rescore)
        if reranker is None:
            return blocks
        if isinstance(reranker, (str, Path)):
            reranker = stack.enter_context(Reranker(reranker))
        blocks = fill_texts(index, blocks)
        return [rerank_hits(q, hits, reranker, top_n, rerank_instruction) for q, hits in zip(queries, blocks)]

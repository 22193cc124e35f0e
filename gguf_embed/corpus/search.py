"""The search of an index moved to ``gguf_embed.search``; this name keeps old imports working."""

from ..search import Hit, SearchError, SearchIndex, check_embedder, embed_queries, index_model, rerank_hits, search, \
    search_vectors
from ..search.exact import top_k_exact
from ..search.query import model_sha256
from ..search.texts import fill_texts

__all__ = ["Hit", "SearchIndex", "SearchError", "search", "search_vectors", "top_k_exact", "embed_queries",
           "index_model", "check_embedder", "fill_texts", "rerank_hits", "model_sha256"]

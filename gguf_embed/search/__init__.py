"""Search an index written by ``gguf-embed encode ... -o OUT.parquet``: queries in, ranked rows out.

    from gguf_embed.search import search

    for hit in search("vectors.parquet", "how do plants make energy?", top_k=5)[0]:
        print(hit.rank, hit.score, hit.id)

The query is embedded in the index's own space (the model file, pooling, dimensions and
normalisation its manifest records; the model's query prompt), by ``query``. The index and its
manifest are ``index``; the scans are ``exact`` (streamed, bounded memory), ``hamming`` (packed
bits, then rescoring) and ``approximate`` (a FAISS index built next to the Parquet); ``hits`` turns
ranked rows into hits and rescores them with a reranker, whose texts ``texts`` recovers.
"""

from .hits import Hit, rerank_hits, search_vectors
from .index import SearchError, SearchIndex
from .query import check_embedder, embed_queries, index_model, search

__all__ = ["Hit", "SearchError", "SearchIndex", "check_embedder", "embed_queries", "index_model", "rerank_hits",
           "search", "search_vectors"]

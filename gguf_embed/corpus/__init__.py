"""Corpus jobs: read a corpus with ids, embed it through the content-addressed store (``gguf_embed.store``)
with resume, write vectors with a manifest.

    from gguf_embed import Embedder
    from gguf_embed.corpus import JobSpec, VectorCache, read_corpus, run_job

    corpus = read_corpus(["docs.jsonl"], text_field="body")
    with Embedder("all-minilm-l6-v2") as emb, VectorCache("vectors.sqlite") as cache:
        rows, stats, bad = run_job(corpus.records, emb, JobSpec(), store=cache)

    # any size: records read lazily, rows a window at a time
    with Embedder("all-minilm-l6-v2") as emb, VectorCache("vectors.sqlite") as cache:
        sink = RowSink("parquet", Path("v.parquet"), emb.dimensions)
        for rows in stream_job(iter_corpus(["docs.jsonl"]), emb, JobSpec(), cache):
            sink.write(rows)
        sink.finish()

Searching what a job wrote is ``gguf_embed.search``.
"""

from ..errors import BadInputError, CacheError
from ..store.cache import VectorCache, default_cache_path, sha256_file, text_key
from ..store.space import space_params
from .chunking import chunk_spans
from .pipeline import CorpusRequest, CorpusSummary, RayOptions, run_corpus
from .readers import iter_corpus, read_corpus
from .records import BadRecord, Corpus, Record
from .spec import JobSpec, JobStats
from .stream import run_job, stream_job
from .writers import Rows, RowSink, write_rows

__all__ = [
    "BadInputError", "BadRecord", "CacheError", "Corpus", "CorpusRequest", "CorpusSummary", "JobSpec", "JobStats",
    "RayOptions", "Record", "RowSink", "Rows", "VectorCache", "chunk_spans", "default_cache_path", "iter_corpus",
    "read_corpus", "run_corpus", "run_job", "sha256_file", "space_params", "stream_job", "text_key", "write_rows",
]

"""Corpus jobs: read a corpus with ids, embed it through a content-addressed cache with resume, write vectors
with a manifest.

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
"""

from .cache import CacheError, VectorCache, default_cache_path, sha256_file, space_params, text_key
from .chunking import chunk_spans
from .job import JobSpec, JobStats, plan_units, run_job
from .pipeline import CorpusRequest, CorpusSummary, RayOptions, run_corpus
from .readers import BadInputError, BadRecord, Corpus, Record, iter_corpus, read_corpus
from .stream import stream_job
from .writers import Rows, RowSink, write_rows

__all__ = [
    "BadInputError", "BadRecord", "CacheError", "Corpus", "CorpusRequest", "CorpusSummary", "JobSpec", "JobStats",
    "RayOptions", "Record", "RowSink", "Rows", "VectorCache", "chunk_spans", "default_cache_path", "iter_corpus",
    "plan_units", "read_corpus", "run_corpus", "run_job", "sha256_file", "space_params", "stream_job", "text_key",
    "write_rows",
]

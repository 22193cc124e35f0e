"""Late chunking against ordinary chunking, on the same GGUF, documents and thread count.

    python bench/bench_late_chunking.py --gguf all-minilm-l6-v2-F16.gguf [--docs 200] [--chunk-tokens 64]
                                        [--threads 2]

1. speed: the corpus job (``run_job``, no cache) over ``--docs`` documents of about 600
   tokens each (longer than MiniLM's 256-token limit, so late chunking runs several passes per
   document), chunked at ``--chunk-tokens`` with ``--chunk-overlap`` 8, ordinary then late,
   interleaved, median of 3: chunks/s.
2. context: Jina's example (three sentences about Berlin, the query "Berlin"): the cosine of
   the query with each sentence embedded alone and late-chunked.
"""

from __future__ import annotations

import os

from common import interleaved, parser

from gguf_embed import Embedder
from gguf_embed.corpus import JobSpec, Record, run_job

BERLIN = ["Berlin is the capital and largest city of Germany, both by area and by population.",
          "Its more than 3.85 million inhabitants make it the European Union's most populous city, as measured by "
          "population within city limits.",
          "The city is also one of the states of Germany, and is the third smallest state in the country in terms "
          "of area."]
TOPICS = ["rivers", "cities", "music", "trains", "mathematics", "bread", "stars", "ships", "forests", "languages"]


def documents(n: int) -> list[Record]:
    out = []
    for d in range(n):
        words = [f"Paragraph {i} of document {d} talks about {TOPICS[(d + i) % len(TOPICS)]} and what people "
                 f"think of them." for i in range(40)]
        out.append(Record(id=f"doc-{d}", text=" ".join(words), where=f"doc {d}"))
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--chunk-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    records = documents(args.docs)
    with Embedder(args.gguf, n_threads=args.threads) as emb:
        print(f"{emb.name}, {args.threads} threads, {args.docs} documents, --chunk-tokens {args.chunk_tokens} "
              f"--chunk-overlap 8, limit {emb.max_tokens}")
        specs = {kind: JobSpec(chunk_tokens=args.chunk_tokens, chunk_overlap=8, late_chunking=kind == "late")
                 for kind in ("ordinary", "late")}
        jobs = {kind: (lambda spec=spec: run_job(records, emb, spec)) for kind, spec in specs.items()}
        for kind, t in interleaved(jobs, 3, keep=True).items():
            chunks, secs = len(t.result[0].ids), t.median
            print(f"  {kind:8s}: {chunks} chunks in {secs:.2f} s ({chunks / secs:.0f} chunks/s)")
        query = emb.embed(["Berlin"]).embeddings[0]
        alone = emb.embed(BERLIN).embeddings @ query
        late = emb.embed_chunks_late(BERLIN).embeddings @ query
        print("  cos('Berlin', sentence): alone " + ", ".join(f"{x:.3f}" for x in alone)
              + " | late-chunked " + ", ".join(f"{x:.3f}" for x in late))


if __name__ == "__main__":
    main()

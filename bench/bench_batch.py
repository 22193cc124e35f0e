"""Tokens per llama.cpp batch (n_batch = n_ubatch for an encoder) against speed, on all-MiniLM-L6-v2:
the measurement behind the encoder batch default.

    .venv/bin/python bench/bench_batch.py [--threads 2] [--batches 256,512,1024,2048] [--quants F16,BF16] [--reps 3]

Short (~15 tokens) and long (~200 tokens) texts; every setting once per repetition, repetitions
interleaved, best of ``--reps`` (the machine may be shared). An encoder sees a whole input in one
batch, so a batch holds at least the model's token limit (256 here).
"""

from __future__ import annotations

import os

from common import interleaved, make_texts, md_header, md_row, parser, work_dir


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="256,512,1024,2048")
    ap.add_argument("--quants", default="F16,BF16")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--short", type=int, default=1000, help="short texts")
    ap.add_argument("--long", type=int, default=100, help="long texts")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gguf_embed import Embedder
    from gguf_embed.convert import convert_model

    work = work_dir("gguf-embed-bench-batch-")
    quants, batches = args.quants.split(","), [int(b) for b in args.batches.split(",")]
    files = {q: convert_model("all-minilm-l6-v2", work / f"minilm-{q}.gguf", q).path for q in quants}
    workloads = {"short (~15 tok)": make_texts(args.short, 11, 1), "long (~200 tok)": make_texts(args.long, 170, 2)}
    embs = {(q, b): Embedder(files[q], n_threads=args.threads, batch_tokens=b) for q in quants for b in batches}
    for emb in embs.values():
        emb.embed(workloads["short (~15 tok)"][:64])  # warm-up
    runs = {(wl, *key): (lambda emb=emb, texts=texts: emb.embed(texts))
            for key, emb in embs.items() for wl, texts in workloads.items()}
    best = {key: timing.best for key, timing in interleaved(runs, args.reps).items()}
    print(f"\nall-MiniLM-L6-v2, {args.threads} threads, best of {args.reps} (interleaved): texts/s "
          f"(ratio to batch {batches[0]})\n")
    print(md_header("workload", "quant", *(f"batch {b}" for b in batches)))
    for wl, texts in workloads.items():
        for q in quants:
            base = best[(wl, q, batches[0])]
            cells = [f"{len(texts) / best[(wl, q, b)]:.1f} ({base / best[(wl, q, b)]:.2f}x)" for b in batches]
            print(md_row(wl, q, *cells))


if __name__ == "__main__":
    main()

"""Tokens per llama.cpp batch (n_batch = n_ubatch for an encoder) against speed, on all-MiniLM-L6-v2:
the measurement behind the encoder batch default.

    .venv/bin/python bench/bench_batch.py [--threads 2] [--batches 256,512,1024,2048] [--quants F16,BF16] [--reps 3]

Short (~15 tokens) and long (~200 tokens) texts; every setting once per repetition, repetitions
interleaved, best of ``--reps`` (the machine may be shared). An encoder sees a whole input in one
batch, so a batch holds at least the model's token limit (256 here).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_embed import make_texts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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

    work = Path(tempfile.mkdtemp(prefix="gguf-embed-bench-batch-"))
    quants, batches = args.quants.split(","), [int(b) for b in args.batches.split(",")]
    files = {q: convert_model("all-minilm-l6-v2", work / f"minilm-{q}.gguf", q).path for q in quants}
    workloads = {"short (~15 tok)": make_texts(args.short, 11, 1), "long (~200 tok)": make_texts(args.long, 170, 2)}
    embs = {(q, b): Embedder(files[q], n_threads=args.threads, batch_tokens=b) for q in quants for b in batches}
    best: dict = {}
    for emb in embs.values():
        emb.embed(workloads["short (~15 tok)"][:64])  # warm-up
    for _ in range(args.reps):
        for key, emb in embs.items():
            for wl, texts in workloads.items():
                t = time.perf_counter()
                emb.embed(texts)
                best[(wl, *key)] = min(best.get((wl, *key), float("inf")), time.perf_counter() - t)
    print(f"\nall-MiniLM-L6-v2, {args.threads} threads, best of {args.reps} (interleaved): texts/s "
          f"(ratio to batch {batches[0]})\n")
    print("| workload | quant | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|---|" + "---|" * len(batches))
    for wl, texts in workloads.items():
        for q in quants:
            base = best[(wl, q, batches[0])]
            cells = [f"{len(texts) / best[(wl, q, b)]:.1f} ({base / best[(wl, q, b)]:.2f}x)" for b in batches]
            print(f"| {wl} | {q} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

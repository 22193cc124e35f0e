"""The Qwen3 last-token fast path against the all-token path, as ratios measured in one run.

(a) whole process, on a Qwen3-Embedding-shaped GGUF (``make synth MODEL=qwen3-embedding-0.6b``
    then ``gguf-embed convert``): ``gguf-embed encode`` against a minimal llama.cpp C-API loop
    that runs the model the way llama-server does (embeddings on, every token an output, the
    LM head run on each of them, llama.cpp's own last-token pooling), each as its own process
    on the same texts and threads, alternated; the vectors of both are compared text by text.
(b) in process, on any last-token GGUF (the tests' tiny Qwen3 is where llama.cpp's own work is
    smallest, so the eval callback's cost shows most): Embedder with the fast path against
    Embedder on the all-token path.

    python bench/bench_fast_path.py process MODEL.gguf [MODEL2.gguf ...] [--texts 200] [--reps 2]
    python bench/bench_fast_path.py inprocess MODEL.gguf [--texts 2000] [--reps 3]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_embed import minimal_loop
from common import interleaved, make_texts, parser


def peer_loop(model: str, texts_file: str, out: str, threads: int, n_batch: int, n_seq: int) -> None:
    """The all-token path with llama.cpp's own pooling (the file's: last token), as llama-server
    --embeddings runs it: bench_embed's minimal loop, embeddings on, every token an output."""
    texts = Path(texts_file).read_text(encoding="utf-8").splitlines()
    result = minimal_loop(Path(model), texts, threads, n_batch, n_seq, flash_attn=False, n_ctx=8192)()
    np.save(out, result / np.linalg.norm(result, axis=1, keepdims=True))


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({done.returncode}): {done.stderr[-2000:]}")


def process_bench(models: list[str], n_texts: int, reps: int, threads: int, batch: int) -> list[dict]:
    texts = make_texts(n_texts, 24, seed=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "texts.txt"
        src.write_text("\n".join(texts) + "\n", encoding="utf-8")
        exe = [str(Path(sys.executable).with_name("gguf-embed"))]  # the installed command, as a user runs it
        for model in models:
            ours_out, peer_out = Path(tmp) / "ours.npy", Path(tmp) / "peer.npy"
            ours_cmd = exe + ["encode", str(src), "-m", model, "-o", str(ours_out), "-q", "--threads", str(threads),
                              "--batch-tokens", str(batch)]
            peer_cmd = [sys.executable, __file__, "peer", model, str(src), str(peer_out), "--threads", str(threads),
                        "--batch", str(batch)]
            # alternated, so both see the same machine
            t = interleaved({"ours": lambda: _run(ours_cmd), "peer": lambda: _run(peer_cmd)}, reps)
            ours_s, peer_s = t["ours"].best, t["peer"].best
            a, b = np.load(ours_out), np.load(peer_out)
            cos = (a * b).sum(1)
            row = {"model": Path(model).name, "texts": n_texts, "threads": threads, "batch": batch,
                   "ours_s": ours_s, "all_token_s": peer_s, "speedup": peer_s / ours_s,
                   "cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
                   "identical": int((np.abs(a - b).max(axis=1) == 0).sum())}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def inprocess_bench(model: str, n_texts: int, reps: int, threads: int, batch: int) -> dict:
    from gguf_embed import Embedder

    texts = make_texts(n_texts, 15, seed=2)
    with Embedder(model, n_threads=threads, batch_tokens=batch) as fast, \
            Embedder(model, n_threads=threads, batch_tokens=batch, fast_path=False) as plain:
        assert fast.fast_path and not plain.fast_path
        for emb in (fast, plain):
            emb.embed(texts[:50])  # warm-up
        t = interleaved({"fast": lambda: fast.embed(texts), "plain": lambda: plain.embed(texts)}, reps, keep=True)
    cos = (t["fast"].result.embeddings * t["plain"].result.embeddings).sum(1)
    out = {"model": Path(model).name, "texts": n_texts, "fast_texts_per_s": n_texts / t["fast"].best,
           "plain_texts_per_s": n_texts / t["plain"].best, "ratio": t["plain"].best / t["fast"].best,
           "cos_min": float(cos.min())}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = parser(__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("process")
    p.add_argument("models", nargs="+")
    p.add_argument("--texts", type=int, default=200)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=512)
    q = sub.add_parser("inprocess")
    q.add_argument("model")
    q.add_argument("--texts", type=int, default=2000)
    q.add_argument("--reps", type=int, default=3)
    q.add_argument("--threads", type=int, default=os.cpu_count())
    q.add_argument("--batch", type=int, default=512)
    r = sub.add_parser("peer")  # internal: the all-token loop as its own process
    r.add_argument("model")
    r.add_argument("texts_file")
    r.add_argument("out")
    r.add_argument("--threads", type=int, default=os.cpu_count())
    r.add_argument("--batch", type=int, default=512)
    args = ap.parse_args()
    if args.cmd == "process":
        process_bench(args.models, args.texts, args.reps, args.threads, args.batch)
    elif args.cmd == "inprocess":
        inprocess_bench(args.model, args.texts, args.reps, args.threads, args.batch)
    else:
        peer_loop(args.model, args.texts_file, args.out, args.threads, args.batch, 64)


if __name__ == "__main__":
    main()

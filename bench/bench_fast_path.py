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

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_embed import make_texts  # noqa: E402


def peer_loop(model: str, texts_file: str, out: str, threads: int, n_batch: int, n_seq: int) -> None:
    """The all-token path with llama.cpp's own pooling: what llama-server --embeddings --pooling last runs."""
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda *a: None)  # kept alive for the whole run
    ll.llama_log_set(quiet, None)
    ll.llama_backend_init()
    texts = Path(texts_file).read_text(encoding="utf-8").splitlines()
    model_p = ll.llama_model_load_from_file(model.encode(), ll.llama_model_default_params())
    vocab = ll.llama_model_get_vocab(model_p)
    cp = ll.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 8192, n_batch, n_batch, n_seq
    cp.n_threads = cp.n_threads_batch = threads
    cp.embeddings = True
    cp.pooling_type = ll.LLAMA_POOLING_TYPE_LAST
    cp.kv_unified = True
    cp.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = ll.llama_init_from_model(model_p, cp)
    n_embd = ll.llama_model_n_embd(model_p)
    batch = ll.llama_batch_init(n_batch, 0, n_seq)
    buf = (ll.llama_token * 8192)()
    result = np.empty((len(texts), n_embd), np.float32)
    pending: list[tuple[int, list[int]]] = []

    def flush():
        n = 0
        for s, (_, toks) in enumerate(pending):
            for p, t in enumerate(toks):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = t, p, 1
                batch.seq_id[n][0], batch.logits[n] = s, 1
                n += 1
        batch.n_tokens = n
        assert ll.llama_decode(ctx, batch) == 0
        for s, (i, _) in enumerate(pending):
            result[i] = np.ctypeslib.as_array(ll.llama_get_embeddings_seq(ctx, s), shape=(n_embd,))
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        pending.clear()

    used = 0
    for i, text in enumerate(texts):
        data = text.encode()
        n = ll.llama_tokenize(vocab, data, len(data), buf, 8192, True, False)
        toks = buf[:n]
        if pending and (used + n > n_batch or len(pending) >= n_seq):
            flush()
            used = 0
        pending.append((i, toks))
        used += n
    if pending:
        flush()
    np.save(out, result / np.linalg.norm(result, axis=1, keepdims=True))


def _run(cmd: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - t


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
            ours_t, peer_t = [], []
            for _ in range(reps):  # alternated, so both see the same machine
                ours_t.append(_run(ours_cmd))
                peer_t.append(_run(peer_cmd))
            a, b = np.load(ours_out), np.load(peer_out)
            cos = (a * b).sum(1)
            row = {"model": Path(model).name, "texts": n_texts, "threads": threads, "batch": batch,
                   "ours_s": min(ours_t), "all_token_s": min(peer_t), "speedup": min(peer_t) / min(ours_t),
                   "cos_min": float(cos.min()), "cos_mean": float(cos.mean()),
                   "identical": int((np.abs(a - b).max(axis=1) == 0).sum())}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def inprocess_bench(model: str, n_texts: int, reps: int, threads: int, batch: int) -> dict:
    from gguf_embed import Embedder

    texts = make_texts(n_texts, 15, seed=2)
    vecs = {}
    with Embedder(model, n_threads=threads, batch_tokens=batch) as fast, \
            Embedder(model, n_threads=threads, batch_tokens=batch, fast_path=False) as plain:
        assert fast.fast_path and not plain.fast_path
        for emb in (fast, plain):
            emb.embed(texts[:50])  # warm-up
        times = {"fast": [], "plain": []}
        for _ in range(reps):
            for name, emb in (("fast", fast), ("plain", plain)):
                t = time.perf_counter()
                vecs[name] = emb.embed(texts).embeddings
                times[name].append(time.perf_counter() - t)
    cos = (vecs["fast"] * vecs["plain"]).sum(1)
    out = {"model": Path(model).name, "texts": n_texts, "fast_texts_per_s": n_texts / min(times["fast"]),
           "plain_texts_per_s": n_texts / min(times["plain"]), "ratio": min(times["plain"]) / min(times["fast"]),
           "cos_min": float(cos.min())}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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

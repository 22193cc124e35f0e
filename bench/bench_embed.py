"""Throughput of gguf-embed's Embedder against its peers, on the same GGUF, texts and threads.

Peers:
  (a) a minimal loop over llama-cpp-python's low-level API: tokenise, pack sequences into a
      batch in input order, llama_decode, read llama.cpp's own pooled embeddings;
  (b) llama-cpp-python's high-level ``Llama.embed()``;
  (c) sentence-transformers fp32 (torch) on the same model and CPU.

Workloads: 2,000 short texts (~15 tokens) and 200 long ones (~400 tokens), all-MiniLM-L6-v2
converted with a 512-token limit so the long texts fit everywhere untruncated.

    .venv/bin/python bench/bench_embed.py [--threads N] [--quick]
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from common import make_texts, md_header, md_row, parser, work_dir


def timed(fn, reps: int = 1) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def minimal_loop(path: Path, texts: list[str], threads: int, n_batch: int, n_seq: int, flash_attn: bool,
                 n_ctx: int | None = None):
    """The least a llama-cpp-python user can write: tokenise, decode, read the vectors llama.cpp
    pooled as the file says (embeddings on: every token an output)."""
    import llama_cpp as ll

    from gguf_embed.engine import llama as _llama

    _llama.init()
    mp = ll.llama_model_default_params()
    model = ll.llama_model_load_from_file(str(path).encode(), mp)
    vocab = ll.llama_model_get_vocab(model)
    cp = ll.llama_context_default_params()
    cp.n_batch = cp.n_ubatch = n_batch
    cp.n_ctx = n_ctx or n_batch
    cp.n_seq_max = n_seq
    cp.n_threads = cp.n_threads_batch = threads
    cp.embeddings = True
    cp.kv_unified = True
    cp.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = ll.llama_init_from_model(model, cp)
    n_embd = ll.llama_model_n_embd(model)
    batch = ll.llama_batch_init(n_batch, 0, n_seq)
    buf = (ll.llama_token * 4096)()

    def run():
        out = np.empty((len(texts), n_embd), np.float32)
        pending: list[tuple[int, list[int]]] = []

        def flush():
            n = 0
            for s, (_, toks) in enumerate(pending):
                for p, t in enumerate(toks):
                    batch.token[n] = t
                    batch.pos[n] = p
                    batch.n_seq_id[n] = 1
                    batch.seq_id[n][0] = s
                    batch.logits[n] = 1
                    n += 1
            batch.n_tokens = n
            assert ll.llama_decode(ctx, batch) == 0
            for s, (i, _) in enumerate(pending):
                ptr = ll.llama_get_embeddings_seq(ctx, s)
                out[i] = np.ctypeslib.as_array(ptr, shape=(n_embd,))
            mem = ll.llama_get_memory(ctx)
            if mem:
                ll.llama_memory_clear(mem, True)
            pending.clear()

        used = 0
        for i, text in enumerate(texts):
            data = text.encode()
            n = ll.llama_tokenize(vocab, data, len(data), buf, 4096, True, False)
            toks = buf[:n]
            if pending and (used + n > n_batch or len(pending) >= n_seq):
                flush()
                used = 0
            pending.append((i, toks))
            used += n
        if pending:
            flush()
        return out

    return run


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--quick", action="store_true", help="fewer texts, no settings sweep")
    ap.add_argument("--no-sweep", action="store_true", help="the peer table only")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    logging.getLogger("gguf").setLevel(logging.ERROR)

    import llama_cpp
    import torch
    from sentence_transformers import SentenceTransformer

    from gguf_embed import Embedder
    from gguf_embed.convert import convert_model
    from tools.models.tiny import minilm_dir

    torch.set_num_threads(args.threads)
    scale = 10 if args.quick else 1
    workloads = {
        "2000 short (~15 tok)": make_texts(2000 // scale, 11, 1),
        "200 long (~400 tok)": make_texts(200 // scale, 380, 2),
    }
    work = work_dir("gguf-embed-bench-")
    ggufs = {q: convert_model("all-minilm-l6-v2", work / f"minilm-{q}.gguf", q, max_tokens=512).path
             for q in ("F32", "F16", "Q8_0", "Q4_K_M")}
    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    st.max_seq_length = 512
    t_torch: dict[str, float] = {}

    rows = []
    for fa in ("off", "on"):
        for label, texts in workloads.items():
            with Embedder(ggufs["F16"], n_threads=args.threads, batch_tokens=512, flash_attn=fa) as emb:
                n_tok = int(emb.embed(texts).token_counts.sum())
                t_ours = timed(lambda: emb.embed(texts), reps=2)
            t_min = timed(minimal_loop(ggufs["F16"], texts, args.threads, 512, 64, fa == "on"), reps=2)
            llm = llama_cpp.Llama(str(ggufs["F16"]), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                                  n_threads=args.threads, n_threads_batch=args.threads, flash_attn=fa == "on",
                                  verbose=False)
            t_embed = timed(lambda: llm.embed(texts), reps=2)
            llm.close()
            if label not in t_torch:
                t_torch[label] = timed(lambda: st.encode(texts, batch_size=32), reps=2)
            rows.append((label, fa, len(texts), n_tok, t_ours, t_min, t_embed, t_torch[label]))

    print(f"\nall-MiniLM-L6-v2 F16, {args.threads} threads, batch 512 tokens (texts/s; ratio = Embedder / peer)\n")
    print(md_header("workload", "flash attn", "tokens", "Embedder", "minimal loop", "Llama.embed()",
                    "sentence-transformers fp32", "vs minimal", "vs Llama.embed", "vs torch"))
    for label, fa, n, n_tok, t_o, t_m, t_e, t_s in rows:
        print(md_row(label, fa, n_tok, f"{n / t_o:.0f}", f"{n / t_m:.0f}", f"{n / t_e:.0f}", f"{n / t_s:.0f}",
                     f"{t_m / t_o:.2f}x", f"{t_e / t_o:.2f}x", f"{t_s / t_o:.2f}x"))

    if args.quick or args.no_sweep:
        return
    print("\nSettings sweep against sentence-transformers fp32 (Embedder texts/s / torch texts/s)\n")
    print(md_header("workload", "quant", "threads", "batch tokens", "flash attn", "Embedder texts/s", "vs torch"))
    nt = args.threads
    sweep = [("F16", nt, 512, "on"), ("F16", nt, 256, "on"), ("F16", nt, 2048, "on"), ("F16", nt, 512, "off"),
             ("F16", nt, 2048, "off"), ("F32", nt, 512, "on"), ("Q8_0", nt, 512, "on"), ("Q4_K_M", nt, 512, "on"),
             ("F16", 1, 512, "on")]
    for label, texts in workloads.items():
        for quant, threads, bt, fa in sweep:
            with Embedder(ggufs[quant], n_threads=threads, batch_tokens=bt, flash_attn=fa) as emb:
                secs = timed(lambda: emb.embed(texts), reps=1)
            print(md_row(label, quant, threads, bt, fa, f"{len(texts) / secs:.0f}", f"{t_torch[label] / secs:.2f}x"))


if __name__ == "__main__":
    main()

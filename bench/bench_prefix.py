"""Prefix sharing on Qwen3-Embedding queries: ``Embedder.embed(..., input_type="query")`` with the
instruction decoded once per batch against the same model with ``prefix_cache=False``, on the same
queries, alternated; with the cosine of every query's vector between the two.

Short queries (5 to 15 tokens of the model's own tokenizer, before the instruction) are made from
common words; the instruction is Qwen3-Embedding's default (``--prompt`` for another). Any
last-token GGUF works; the ratio means most on one with Qwen3's real tokenizer (the tests' tiny
real-tokenizer model, or the Qwen3-0.6B shape: ``tools/synth.py qwen3-embedding-0.6b`` with the
real tokenizer files written over the synthetic ones, see ``--help`` of tools/synth.py).

    python bench/bench_prefix.py MODEL.gguf [--queries 500] [--reps 3] [--threads N] [--batch-tokens 512]
"""

from __future__ import annotations

import numpy as np

from common import interleaved, make_texts, md_header, md_row, parser

from gguf_embed import Embedder  # noqa: E402  (common puts the checkout first on sys.path)

DEFAULT_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def short_queries(emb: Embedder, n: int, lo: int = 5, hi: int = 15, seed: int = 0) -> list[str]:
    """``n`` queries of ``lo``..``hi`` tokens (the model's tokenizer, no special tokens, no prompt)."""
    out: list[str] = []
    rng = np.random.default_rng(seed)
    while len(out) < n:
        for text in make_texts(4 * n, int(rng.integers(3, 12)), seed=int(rng.integers(1 << 30))):
            k = len(emb.session.tokenize(" " + text.rstrip(".").lower(), add_special=False))
            if lo <= k <= hi and len(out) < n:
                out.append(text.rstrip(".").lower())
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("model")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--batch-tokens", type=int)
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    args = ap.parse_args()
    kw = {"query_prompt": args.prompt, "n_threads": args.threads, "batch_tokens": args.batch_tokens}
    with Embedder(args.model, **kw) as shared, Embedder(args.model, prefix_cache=False, **kw) as whole:
        assert shared.session.runner.shares_prefixes, "this model does not share prefixes (not last-token fast path)"
        queries = short_queries(shared, args.queries)
        seqs = shared.tokenize(queries, input_type="query")
        n_prompt = len(shared.session.tokenize(args.prompt, add_special=False))
        runs = {"shared": lambda: shared.embed(queries, input_type="query").embeddings,
                "whole": lambda: whole.embed(queries, input_type="query").embeddings}
        for fn in runs.values():  # warm-up
            fn()
        t = interleaved(runs, args.reps, keep=True)
    a, b = t["shared"].result, t["whole"].result
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    lengths = np.array([len(s) for s in seqs])
    print(f"{args.model}: {len(queries)} queries, {lengths.min()}-{lengths.max()} tokens each "
          f"(mean {lengths.mean():.1f}) with the {n_prompt}-token instruction; best of {args.reps}\n")
    print(md_header("path", "seconds", "queries/s", "ratio", "cos min to unshared"))
    for key in ("whole", "shared"):
        s = t[key].best
        print(md_row(key, f"{s:.3f}", f"{len(queries) / s:.0f}", f"{t['whole'].best / s:.2f}x",
                     f"{cos.min():.7f}" if key == "shared" else "-"))


if __name__ == "__main__":
    main()

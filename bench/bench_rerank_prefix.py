"""Prefix sharing on a Qwen3-Reranker request: ``Reranker.score(query, passages)`` with the template's
opening, the instruction and the query decoded once for all passages, against the same model with
``prefix_cache=False``, on the same request, alternated; with every probability's difference and the
order of the passages.

One query and ``--passages`` passages per request (default 64), each ``--words LO HI`` words of common
English (the acceptance's two cases: about 40-60 and 150-200 tokens). Any Qwen3-Reranker GGUF; the
ratio means most on the Qwen3-Reranker-0.6B shape with Qwen3's real tokenizer (``bench/bench_rerank.py``
makes one without ``--gguf``; ``tools/synth.py qwen3-reranker-0.6b`` and ``gguf-embed convert``).

    python bench/bench_rerank_prefix.py MODEL.gguf [--passages 64] [--words 40 60] [--reps 3] [--threads N]
"""

from __future__ import annotations

import numpy as np

from common import interleaved, make_texts, md_header, md_row, parser

from gguf_embed.engine import prefix  # noqa: E402  (common puts the checkout first on sys.path)
from gguf_embed.reranker import Reranker  # noqa: E402

QUERY = "which river runs through the capital of france and how long is it"


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("model")
    ap.add_argument("--passages", type=int, default=64)
    ap.add_argument("--words", type=int, nargs=2, default=[40, 60], metavar=("LO", "HI"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lo, hi = args.words
    passages = [make_texts(1, int(rng.integers(lo, hi + 1)), seed=i)[0] for i in range(args.passages)]
    kw = {"n_threads": args.threads}
    with Reranker(args.model, **kw) as shared, Reranker(args.model, prefix_cache=False, **kw) as whole:
        assert shared.session.runner.shares_prefixes, "this model does not share prefixes (not last-token fast path)"
        seqs = shared.tokenize_pairs(QUERY, passages)
        common = min(prefix._lcp(seqs[0], s) for s in seqs[1:])
        runs = {"shared": lambda: shared.score(QUERY, passages).scores,
                "whole": lambda: whole.score(QUERY, passages).scores}
        for fn in runs.values():  # warm-up
            fn()
        t = interleaved(runs, args.reps, keep=True)
    a, b = np.asarray(t["shared"].result), np.asarray(t["whole"].result)
    same_order = np.argsort(-a, kind="stable").tolist() == np.argsort(-b, kind="stable").tolist()
    lengths = np.array([len(s) for s in seqs])
    print(f"{args.model}: 1 query x {len(passages)} passages, pairs of {lengths.min()}-{lengths.max()} tokens "
          f"(mean {lengths.mean():.0f}), {common} of them shared by every pair; best of {args.reps}\n")
    print(md_header("path", "seconds", "pairs/s", "ratio", "max |dp| to unshared", "same order"))
    for key in ("whole", "shared"):
        s = t[key].best
        print(md_row(key, f"{s:.3f}", f"{len(passages) / s:.1f}", f"{t['whole'].best / s:.2f}x",
                     f"{np.abs(a - b).max():.1e}" if key == "shared" else "-",
                     str(same_order) if key == "shared" else "-"))


if __name__ == "__main__":
    main()

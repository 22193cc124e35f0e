"""Prefix sharing on a Qwen3-Reranker request: ``Reranker.score(query, passages)`` with the template's
opening, the instruction and the query decoded once for all passages, against the same model with
``prefix_cache=False``, on the same request, alternated; with every probability's difference and the
order of the passages.

One query and ``--passages`` passages per request (default 64), each ``--words LO HI`` words of common
English (the acceptance's two cases: about 40-60 and 150-200 tokens). Any Qwen3-Reranker GGUF; the
ratio means most on the Qwen3-Reranker-0.6B shape with Qwen3's real tokenizer (``bench/bench_rerank.py``
makes one without ``--gguf``; ``tools/synth.py qwen3-reranker-0.6b`` and ``gguf-embed convert``).

    python bench/bench_rerank_prefix.py MODEL.gguf [--passages 64] [--words 40 60] [--reps 3] [--threads N]
    python bench/bench_rerank_prefix.py MODEL.gguf --serve [--requests 6]

``--serve``: the same through ``POST /v1/rerank`` of ``gguf-embed serve`` against
``gguf-embed serve --no-prefix-cache``, one after the other: ``--requests`` requests in a row, each
another query over the same passages; requests/s, the mean latency, and the scores' largest
difference between the two servers.
"""

from __future__ import annotations

import numpy as np

from common import interleaved, make_texts, md_header, md_row, parser

from gguf_embed.engine import prefix  # noqa: E402  (common puts the checkout first on sys.path)
from gguf_embed.reranker import Reranker  # noqa: E402

QUERY = "which river runs through the capital of france and how long is it"


def serve(model: str, passages: list[str], requests: int, threads: int | None) -> None:
    import time

    import httpx

    from common import gguf_embed_served

    queries = [f"{QUERY} ({i})" for i in range(requests)]
    times, scores = {}, {}
    for label, extra in (("prefixes kept", []), ("--no-prefix-cache", ["--no-prefix-cache"])):
        with gguf_embed_served(model, *extra, threads=threads) as url, httpx.Client(base_url=url, timeout=600) as http:
            post = lambda q: http.post("/v1/rerank", json={"query": q, "documents": passages}).json()  # noqa: E731
            post("warm up")
            t = time.perf_counter()
            answers = [post(q) for q in queries]
            times[label] = time.perf_counter() - t
        scores[label] = np.array([[r["relevance_score"] for r in sorted(a["results"], key=lambda r: r["index"])]
                                  for a in answers])
    diff = np.abs(scores["prefixes kept"] - scores["--no-prefix-cache"]).max()
    print(f"{model}: {requests} requests of 1 query x {len(passages)} passages through /v1/rerank\n")
    print(md_header("server", "requests/s", "mean latency (s)", "ratio", "max |dp| between the two"))
    for label, secs in times.items():
        print(md_row(label, f"{requests / secs:.2f}", f"{secs / requests:.2f}",
                     f"{times['--no-prefix-cache'] / secs:.2f}x", f"{diff:.1e}" if label == "prefixes kept" else "-"))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("model")
    ap.add_argument("--passages", type=int, default=64)
    ap.add_argument("--words", type=int, nargs=2, default=[40, 60], metavar=("LO", "HI"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--serve", action="store_true", help="through gguf-embed serve's /v1/rerank")
    ap.add_argument("--requests", type=int, default=6)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lo, hi = args.words
    passages = [make_texts(1, int(rng.integers(lo, hi + 1)), seed=i)[0] for i in range(args.passages)]
    if args.serve:
        return serve(args.model, passages, args.requests, args.threads)
    kw = {"n_threads": args.threads}
    with Reranker(args.model, **kw) as shared, Reranker(args.model, prefix_cache=False, **kw) as whole:
        assert shared.session.runner.shares_prefixes, "this model does not share prefixes (not last-token fast path)"
        seqs = shared.tokenize_pairs(QUERY, passages)
        common = min(prefix.common_length(seqs[0], s) for s in seqs[1:])
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

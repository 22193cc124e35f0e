"""XLM-R cross-encoders (bge-reranker-v2-m3's layout): gguf-embed's scores against
sentence-transformers' ``CrossEncoder`` per quantisation, and the cost of one long pair.

    .venv/bin/python bench/bench_xlmr_rerank.py [--hidden 256] [--layers 4] [--quants F32 F16 Q8_0] [--long-tokens 2048]

A random ``XLMRobertaForSequenceClassification`` (one label, 8194 positions) is built around
XLM-R's real SentencePiece vocabulary (``.cache/llama-vocab``, as the tests use it) and
converted by gguf-embed, its weights' spread scaled with 1/sqrt(hidden) (random networks at a
fixed spread grow chaotic with width and amplify any rounding). Random weights say nothing
about ranking quality; the numbers are
how far the GGUF's probabilities are from the Hugging Face model's on the rerank test cases,
and whether the order is the same. ``--long-tokens N`` also scores one pair cut to N tokens
and reports its wall time and the process's peak RSS.
"""

from __future__ import annotations

import os
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from common import parser, work_dir  # noqa: E402
from tools.models.multilingual import xlmr_tokenizer_json  # noqa: E402
from tools.models.rerankers import DOCUMENTS, QUERY, build_tiny_xlmr_reranker  # noqa: E402


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--quants", nargs="+", default=["F32", "F16", "Q8_0"])
    ap.add_argument("--long-tokens", type=int, default=0, help="also score one pair of this many tokens")
    args = ap.parse_args()

    import torch
    from sentence_transformers import CrossEncoder

    from gguf_embed.convert import convert_model
    from gguf_embed.engine.llama import rank_scores
    from gguf_embed.reranker import Reranker

    torch.set_num_threads(1)
    work = work_dir("xlmr-rerank-")
    # weights scaled with 1/sqrt(hidden): each layer's activations spread as in the tests' hidden-32 model
    src = build_tiny_xlmr_reranker(work / "bge-reranker-v2-m3-random", xlmr_tokenizer_json(), hidden=args.hidden,
                                   layers=args.layers, init_range=0.2 * (32 / args.hidden) ** 0.5)
    ce = CrossEncoder(str(src), device="cpu")
    ref = ce.predict([(QUERY, d) for d in DOCUMENTS])
    print(f"hidden {args.hidden}, layers {args.layers}, {len(DOCUMENTS)} pairs; probabilities vs CrossEncoder (F32 torch)")
    print(f"{'quant':6} {'file MiB':>9} {'max |dp|':>9} {'same order':>10} {'vs llama.cpp RANK |dlogit|':>27}")
    for quant in args.quants:
        path = convert_model(str(src), work / f"rr-{quant}.gguf", quant).path
        with Reranker(path) as rr:
            got = rr.score(QUERY, DOCUMENTS).scores
            same = list(np.argsort(-got, kind="stable")) == list(np.argsort(-ref, kind="stable"))
            raw = rr.score(QUERY, DOCUMENTS, raw_scores=True).scores
            theirs = rank_scores(rr.session.model, rr.tokenize_pairs(QUERY, DOCUMENTS))[:, 0]
            print(f"{quant:6} {path.stat().st_size / 2**20:9.1f} {np.abs(got - ref).max():9.2e} {str(same):>10} "
                  f"{np.abs(raw - theirs).max():27.2e}")
            if args.long_tokens and quant == args.quants[0]:
                long_doc = " ".join(DOCUMENTS) * (args.long_tokens // 100 + 2)
                whole = rr.tokenize_pairs(QUERY, [long_doc])[0]  # cut at the model's limit
                seq = np.concatenate([whole[: args.long_tokens - 1], whole[-1:]])  # the document's end cut, </s> kept
                t = time.perf_counter()
                rr.score_tokens([seq])
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
                print(f"one {len(seq)}-token pair at {quant}: {time.perf_counter() - t:.1f} s, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()

"""The memory plan against what llama.cpp allocates, on this machine's CPU.

    .venv/bin/python bench/plan_check.py MODEL.gguf [MODEL.gguf ...] [--ctx 512 8192 32768]

For each model and context: the plan's total at context creation vs the sum of the
buffers llama.cpp reports (model, KV, compute, output), and the resident-memory growth
after one full batch vs the plan's total with the output buffer grown to a full batch.
"""

from __future__ import annotations

from pathlib import Path

from common import md_header, md_row, parser

from gguf_embed.engine import planning as plan
from gguf_embed.engine.session import measure_buffers
from gguf_embed.engine.settings import RuntimeSettings


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--ctx", nargs="+", type=int, default=[512, 8192, 32768])
    ap.add_argument("--paths", nargs="+", choices=["fast", "all-token"], default=["fast"],
                    help="for last-token decoders: the fast path, the all-token path, or both")
    args = ap.parse_args()
    print(md_header("model", "path", "context", "plan at start (MiB)", "llama.cpp allocates (MiB)", "difference",
                    "plan after a full batch (MiB)", "resident growth (MiB)"))
    for path in args.models:
        for which in args.paths:
            fast = which == "fast"
            for ctx in args.ctx:
                p = plan.estimate(path, n_ctx=ctx, fast_path=fast)
                m = measure_buffers(path, RuntimeSettings.of(**p.settings(), fast_path=fast))
                actual = sum(m["reported"].values())
                diff = (p.total_at_start - actual) / actual
                label = "fast" if p.fast_path else "all-token"
                print(md_row(path.name, label, ctx, f"{p.total_at_start / 2**20:,.0f}", f"{actual / 2**20:,.0f}",
                             f"{diff:+.1%}", f"{p.total / 2**20:,.0f}", f"{m['rss_growth'] / 2**20:,.0f}"), flush=True)


if __name__ == "__main__":
    main()

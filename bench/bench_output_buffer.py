"""Peak memory of ``gguf-embed encode`` on one long document, with and without logits in llama.cpp's
output buffer, on a model whose vocabulary makes them large.

    .venv/bin/python bench/bench_output_buffer.py [--stock-lib DIR] [--tokens 512 8192]

The model: a 2-layer, 64-wide random XLM-R on the real 250,002-piece vocabulary (llama.cpp's
test vocabulary from the llama-cpp-python sdist) with 8194 positions, as bge-m3 (a 64 MiB F32
file). One document of exactly N tokens per run, each run a fresh process reporting its peak
resident memory. ``--stock-lib``: a folder with an unpatched libllama (e.g. a build of the same
sdist without patches/llama.cpp) to measure beside this build's, through LLAMA_CPP_LIB_PATH;
the vectors of the two builds are compared by cosine. Also the plan's host figure for the same
settings (``gguf-embed plan``), which counts llama.cpp's buffers only, not Python's own memory.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from common import md_header, md_row, parser, work_dir

from gguf_embed.convert import convert_model
from gguf_embed.engine import planning
from tools.models.multilingual import XLMR_VOCAB, build_tiny_xlmr, xlmr_tokenizer_json
from tools.peak_rss import gguf_embed_peak_rss
from tools.texts import text_of_tokens

MiB = 2**20


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--stock-lib", help="a folder with an unpatched libllama, measured beside this build")
    ap.add_argument("--tokens", nargs="+", type=int, default=[512, 8192])
    ap.add_argument("--workdir")
    args = ap.parse_args()
    if not XLMR_VOCAB.exists():
        sys.exit("needs llama.cpp's XLM-R vocabulary: make install-test")
    work = work_dir("gguf-embed-output-buffer-", args.workdir)
    src = build_tiny_xlmr(work / "tiny-bge-m3", xlmr_tokenizer_json(), hidden=64, max_tokens=8192)
    model = convert_model(str(src), work / "tiny-bge-m3-F32.gguf", "F32").path
    builds = {"this build": None, **({"stock": args.stock_lib} if args.stock_lib else {})}
    shape = planning.read_shape(model)
    print(f"model: {model.name}, {model.stat().st_size / MiB:.0f} MiB file, vocabulary {shape.n_vocab:,}")
    print(md_header("tokens", "build", "peak RSS (MiB)", "file + 1 GiB (MiB)", "plan: host buffers (MiB)",
                    "cos to this build"))
    for n in args.tokens:
        text = work / f"doc-{n}.txt"
        text.write_text(text_of_tokens(model, n) + "\n")
        vectors = {}
        for name, lib in builds.items():
            env = dict(os.environ)
            if lib:
                env["LLAMA_CPP_LIB_PATH"] = str(lib)
            out = work / f"out-{n}-{name.replace(' ', '-')}.npy"
            peak, _ = gguf_embed_peak_rss("encode", text, "-m", model, "-o", out, "--no-cache", env=env)
            vectors[name] = np.load(out)[0].astype(np.float64)
            plan = planning.estimate(shape, reserve_logits=lib is not None)
            a, b = vectors["this build"], vectors[name]
            cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
            print(md_row(n, name, f"{peak / MiB:,.0f}", f"{(model.stat().st_size + 2**30) / MiB:,.0f}",
                         f"{plan.device_total('CPU') / MiB:,.0f}", f"{cos:.7f}"), flush=True)


if __name__ == "__main__":
    main()

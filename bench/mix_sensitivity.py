"""Where a quantised embedding model loses its quality: llama.cpp's Q4_K_M mixture with one group of
matrices kept at F16 at a time, against sentence-transformers fp32 on the held-out texts of
``eval_quants.py``, with the importance matrix of the built-in calibration set.

    python bench/mix_sensitivity.py [MODEL] [--quant Q4_K_M] [--no-imatrix] [--threads 2]

This is the measurement behind ``convert --mix embedding`` (see ``gguf_embed.model.tensor_table``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from common import md_header, md_row, parser

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gguf  # noqa: E402
import numpy as np  # noqa: E402

from eval_quants import held_out_texts  # noqa: E402
from gguf_embed import Embedder  # noqa: E402
from gguf_embed.convert import convert_model, resolve_source  # noqa: E402
from gguf_embed.convert.imatrix import calibrate  # noqa: E402
from gguf_embed.engine.quantize import quantize_file  # noqa: E402
from gguf_embed.heads.pooling import row_cosines  # noqa: E402
from gguf_embed.quality import evaluate  # noqa: E402
from gguf_embed.registry import load_registry  # noqa: E402

GROUPS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("model", nargs="?", default="all-minilm-l6-v2")
    ap.add_argument("--quant", default="Q4_K_M")
    ap.add_argument("--no-imatrix", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    folder, _ = resolve_source(args.model, load_registry())
    texts = held_out_texts()
    ref = evaluate.st_encoder(folder)(texts)
    f16 = gguf.GGMLQuantizationType.F16.value
    with tempfile.TemporaryDirectory() as tmp:
        f32 = convert_model(args.model, Path(tmp) / "m-F32.gguf", "F32").path
        weights = None if args.no_imatrix else calibrate(f32, threads=args.threads).importance.mean_squares()
        runs = [("nothing (llama.cpp's mix)", {}, None), ("token embeddings", {}, f16)]
        runs += [(g, {rf"\.{g}\.weight$": f16}, None) for g in GROUPS]
        print(f"{args.model} {args.quant}{'' if args.no_imatrix else ' + imatrix'}, {len(texts)} held-out texts\n")
        print(md_header("kept at F16", "MiB", "cos min", "cos mean"))
        for label, types, embd in runs:
            out = Path(tmp) / "q.gguf"
            quantize_file(f32, out, args.quant, args.threads, imatrix=weights, tensor_types=types, token_embd_type=embd)
            with Embedder(out, n_threads=args.threads) as emb:
                c = row_cosines(emb.embed(texts, truncate="end").embeddings, ref)
            size = f"{out.stat().st_size / 2**20:.2f}"
            print(md_row(label, size, f"{np.min(c):.4f}", f"{np.mean(c):.5f}"), flush=True)


if __name__ == "__main__":
    main()

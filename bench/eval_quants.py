"""Quality per quantisation: cosine to sentence-transformers fp32 and Lee (2005) Spearman.

    python bench/eval_quants.py [MODEL] [--quants F16,Q8_0,...]

MODEL is a models.toml name whose weights ship in a package or are cached (default:
all-minilm-l6-v2). Prints a markdown table; the same numbers as `gguf-embed eval`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gguf_embed import Embedder  # noqa: E402
from gguf_embed.quality import evaluate  # noqa: E402
from gguf_embed.quality import texts as multilingual  # noqa: E402
from gguf_embed.convert import convert_model, resolve_source  # noqa: E402
from gguf_embed.registry import load_registry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="all-minilm-l6-v2")
    ap.add_argument("--quants", default="F16,Q8_0,Q6_K,Q5_K_M,Q4_K_M")
    args = ap.parse_args()
    folder, _ = resolve_source(args.model, load_registry())
    texts = multilingual.texts()
    st = evaluate.st_encoder(folder)
    ref = st(texts)
    st_lee = evaluate.lee_benchmark(st)
    print("| GGUF | cos min | cos p1 | cos mean | rank agreement (Spearman) | Lee Spearman | Lee Pearson |")
    print("|---|---|---|---|---|---|---|")
    print(f"| sentence-transformers fp32 | 1 | 1 | 1 | 1 | {st_lee.spearman:.4f} | {st_lee.pearson:.4f} |")
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants.split(","):
            path = convert_model(args.model, Path(tmp) / f"m-{quant}.gguf", quant).path
            with Embedder(path) as emb:
                encode = lambda t: emb.embed(list(t), truncate="end").embeddings  # noqa: E731
                a = evaluate.compare(encode(texts), ref)
                lee = evaluate.lee_benchmark(encode)
            print(f"| {quant} | {a.cos_min:.4f} | {a.cos_p1:.4f} | {a.cos_mean:.5f} | {a.spearman:.4f} "
                  f"| {lee.spearman:.4f} | {lee.pearson:.4f} |", flush=True)


if __name__ == "__main__":
    main()

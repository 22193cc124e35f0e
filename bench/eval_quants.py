"""Quality per quantisation, with and without importance weights: cosine to sentence-transformers fp32
(min / p1 / mean), rank agreement and Lee (2005) Spearman.

    python bench/eval_quants.py [MODEL] [--quants F16,Q8_0,...] [--imatrix] [--mixes embedding,llama]
                                [--texts held-out|builtin]

MODEL is a models.toml name whose weights ship in a package or are cached (default:
all-minilm-l6-v2). Prints a markdown table; the same numbers as `gguf-embed eval`.

``--imatrix`` adds, for every quantised type, the file quantised with the importance matrix that
``gguf-embed imatrix`` computes on the built-in calibration texts (computed once, on the F32 file).
The measurement texts are then held out from calibration: ``held-out`` (the default) is the
test suite's varied sentences, the first 100 documents of gensim's Lee background corpus (news) and
the first 100 sentences of its Pang & Lee movie-review corpus, less any text the calibration set has;
``builtin`` is the built-in multilingual set (part of the calibration set: without --imatrix only).

``--mixes`` names the tensor mixtures to quantise every type with (``convert --mix``; default: the
embedding mix alone); rows are labelled with theirs when there is more than one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from common import md_header, md_row, parser

os.environ.setdefault("OMP_NUM_THREADS", "1")

from gguf_embed import Embedder  # noqa: E402
from gguf_embed.convert import convert_model, resolve_source  # noqa: E402
from gguf_embed.convert.imatrix import calibrate, write_imatrix  # noqa: E402
from gguf_embed.quality import evaluate  # noqa: E402
from gguf_embed.quality import texts as multilingual  # noqa: E402
from gguf_embed.quality.calibration import calibration_texts  # noqa: E402
from gguf_embed.registry import load_registry  # noqa: E402

HELD_OUT_EACH = 100


def held_out_texts() -> list[str]:
    from tools.texts import VARIED_TEXTS

    folder = evaluate._gensim_test_data()
    out = list(VARIED_TEXTS)
    for name in ("lee_background.cor", "pang_lee_polarity.cor"):
        lines = (folder / name).read_text(encoding="latin-1").splitlines()
        out += [line.strip() for line in lines if line.strip()][:HELD_OUT_EACH]
    seen = set(calibration_texts())
    return [t for t in out if t not in seen]


def row(label: str, size: int, a, lee) -> str:
    return md_row(label, f"{size / 2**20:.2f}", f"{a.cos_min:.4f}", f"{a.cos_p1:.4f}", f"{a.cos_mean:.5f}",
                  f"{a.spearman:.4f}", f"{lee.spearman:.4f}", f"{lee.pearson:.4f}")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("model", nargs="?", default="all-minilm-l6-v2")
    ap.add_argument("--quants", default="F16,Q8_0,Q6_K,Q5_K_M,Q4_K_M")
    ap.add_argument("--imatrix", action="store_true", help="also quantise with an importance matrix")
    ap.add_argument("--texts", choices=["held-out", "builtin"], default="held-out")
    ap.add_argument("--mixes", default="embedding", help="comma-separated tensor mixtures (convert --mix)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    mixes = args.mixes.split(",")
    if args.imatrix and args.texts == "builtin":
        ap.error("the built-in set is part of the calibration set; measure --imatrix on --texts held-out")
    folder, _ = resolve_source(args.model, load_registry())
    texts = held_out_texts() if args.texts == "held-out" else multilingual.texts()
    st = evaluate.st_encoder(folder)
    ref = st(texts)
    st_lee = evaluate.lee_benchmark(st)
    print(f"{len(texts)} {args.texts} texts\n")
    print(md_header("GGUF", "MiB", "cos min", "cos p1", "cos mean", "rank agreement (Spearman)", "Lee Spearman",
                    "Lee Pearson"))
    print(f"| sentence-transformers fp32 | | 1 | 1 | 1 | 1 | {st_lee.spearman:.4f} | {st_lee.pearson:.4f} |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        imatrix = None
        if args.imatrix:
            f32 = convert_model(args.model, Path(tmp) / "m-F32.gguf", "F32").path
            imatrix = write_imatrix(Path(tmp) / "imatrix.gguf", calibrate(f32, threads=args.threads))
        for quant in args.quants.split(","):
            direct = quant in ("F32", "F16", "BF16")
            for mix in mixes[:1] if direct else mixes:
                for weighted in (False, True) if imatrix and not direct else (False,):
                    if not weighted and quant == "IQ3_XXS":
                        continue  # llama.cpp makes it only with an importance matrix
                    out = Path(tmp) / f"m-{quant}-{mix}-{int(weighted)}.gguf"
                    path = convert_model(args.model, out, quant, threads=args.threads,
                                         imatrix=imatrix if weighted else None, mix=mix).path
                    with Embedder(path) as emb:
                        encode = lambda t: emb.embed(list(t), truncate="end").embeddings  # noqa: E731
                        a = evaluate.compare(encode(texts), ref)
                        lee = evaluate.lee_benchmark(encode)
                    label = quant + (f", {mix} mix" if len(mixes) > 1 and not direct else "")
                    print(row(label + (" + imatrix" if weighted else ""), path.stat().st_size, a, lee), flush=True)
                    path.unlink()


if __name__ == "__main__":
    main()

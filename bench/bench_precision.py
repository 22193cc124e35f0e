"""Compressed vectors: what int8 and binary cost in retrieval, measured against exact float search.

The corpus is every sentence of gensim's Lee background corpus (about 2,500 news sentences);
the queries are the sentences of the Lee benchmark's 50 documents (another set of news texts).
Each index is written by ``encode --precision`` through one vector cache, batch-invariant (so all
are made from the same float vectors) and searched through ``search.search_vectors``; recall@10 is the
share of the float index's exact top 10 that each finds. Also: cosine of dequantised int8/uint8
vectors to the float ones, bytes per vector, how often a text's int8 codes change with its batch
(packed as usual, and batch-invariant) and what batch invariance costs in speed.

First, raw codes as a vector store scores them (no dequantisation), for both int8/uint8 schemes, on
20 real texts (tools/texts.py): cosine of each raw code vector to its float vector, the share of
texts whose nearest neighbour by raw scores is the float one, and the mean Spearman correlation of
each text's neighbour order (``quality.raw_codes``). ``--raw-only`` stops there (seconds).

    python bench/bench_precision.py [--model all-minilm-l6-v2.gguf] [--threads 2] [--raw-only]
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from common import interleaved, md_header, md_row, parser, work_dir  # noqa: E402


def sentences(path: Path, encoding: str = "utf-8") -> list[str]:
    docs = path.read_text(encoding=encoding).splitlines()
    return list(dict.fromkeys(s.strip() for d in docs for s in re.split(r"(?<=[.!?])\s+", d) if len(s.strip()) > 20))


def recall(found: list, exact: list, k: int) -> float:
    return float(np.mean([len({h.row for h in f[:k]} & {h.row for h in e[:k]}) / k for f, e in zip(found, exact)]))


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--model", help="a MiniLM GGUF (default: convert all-minilm-l6-v2 at F16 into a temp dir)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", help="a folder for the indexes and their vector cache (default: a new temp dir)")
    ap.add_argument("--raw-only", action="store_true", help="only the raw-code scoring of both schemes")
    args = ap.parse_args()

    from gguf_embed import Embedder
    from gguf_embed.convert import convert_model
    from gguf_embed.corpus import JobSpec
    from gguf_embed.corpus.pipeline import CorpusRequest, run_corpus
    from gguf_embed.search import SearchIndex, embed_queries, search_vectors
    from gguf_embed.heads.pooling import row_cosines
    from gguf_embed.heads.precision import dequantize

    work = work_dir("bench-precision-", args.work)
    os.environ.setdefault("GGUF_EMBED_RANGES", str(work / "ranges"))
    model = args.model or str(convert_model("all-minilm-l6-v2", work / "minilm-F16.gguf", "F16").path)
    with Embedder(model, n_threads=args.threads) as emb:
        raw_scoring_table(emb)
    if args.raw_only:
        return
    import gensim

    data = Path(gensim.__file__).parent / "test" / "test_data"
    corpus, queries = sentences(data / "lee_background.cor"), sentences(data / "lee.cor", "latin-1")
    src = work / "corpus.txt"
    src.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    print(f"corpus: {len(corpus)} sentences (lee_background.cor), queries: {len(queries)} (lee.cor), model {model}")
    with Embedder(model, n_threads=args.threads) as emb:
        idx, t0 = {}, time.perf_counter()
        for p, rescore in (("float", None), ("int8", None), ("uint8", None), ("binary", None),
                           ("binary", "int8"), ("binary", "float")):
            name = p + (f"+{rescore}" if rescore else "")
            out = work / f"{name}.parquet"
            run_corpus(CorpusRequest((str(src),), out, "parquet", cache=work / "cache.sqlite", precision=p,
                                     rescore=rescore), emb, JobSpec(truncate="end", batch_invariant=True))
            idx[name] = SearchIndex(out)
        print(f"encoded in {time.perf_counter() - t0:.0f} s")
        qv = embed_queries(emb, idx["float"], queries)
        batch_noise(emb, corpus[:40], idx["int8"].codebook)
        invariance_cost(emb, corpus[:1000])
    floats = np.concatenate([b for _, b in idx["float"].batches(8192)])
    exact = search_vectors(idx["float"], qv, 100)
    print(md_header("index", "bytes per vector", "recall@10 vs exact float", "recall@1"))
    print(md_row("float32", 4 * idx["float"].dims, 1, 1))
    for p in ("int8", "uint8"):
        found = search_vectors(idx[p], qv, 10)
        print(md_row(f"{p} (dequantised, exact)", idx[p].width, f"{recall(found, exact, 10):.4f}",
                     f"{recall(found, exact, 1):.4f}"))
    for name, with_ in (("binary", "its sign vectors"), ("binary+int8", "int8 codes"), ("binary+float", "floats")):
        extra = {"binary": 0, "binary+int8": idx["float"].dims, "binary+float": 4 * idx["float"].dims}[name]
        for m in (1, 2, 4, 10, 25):
            found = search_vectors(idx[name], qv, 10, rescore=m)
            print(md_row(f"binary, Hamming top {10 * m} rescored with {with_}", f"{idx[name].width} (+{extra} on disk)",
                         f"{recall(found, exact, 10):.4f}", f"{recall(found, exact, 1):.4f}"))
    for p in ("int8", "uint8"):
        codes = np.concatenate([b for _, b in idx[p].code_batches(8192)])
        c = row_cosines(dequantize(codes, p, **idx[p].codebook), floats)
        print(f"{p}: cos(dequantised, float) over the corpus: min {c.min():.5f}, p1 {np.percentile(c, 1):.5f}, "
              f"mean {c.mean():.5f}")
    ranges_choices(floats, idx["int8"])


def raw_scoring_table(emb, n: int = 20) -> None:
    """Raw codes of ``n`` real texts scored as they are, in both schemes: int8 by dot product, uint8 by
    dot product and by Euclidean distance."""
    from gguf_embed.quality.raw_codes import raw_scoring
    from gguf_embed.store.codes import model_quantizer
    from tools.texts import VARIED_TEXTS

    floats = emb.embed(VARIED_TEXTS[:n], batch_invariant=True).embeddings
    print(f"raw codes of {n} real texts (tools/texts.py), scored as they are:")
    print(md_header("scheme", "codes", "raw score", "min cos(raw codes, float)", "same nearest neighbour",
                    "neighbour-rank Spearman (mean)", "(min)"))
    for scheme in ("symmetric", "per-dimension"):
        for precision, metric in (("int8", "dot"), ("uint8", "dot"), ("uint8", "euclidean")):
            r = raw_scoring(model_quantizer(emb, precision, scheme=scheme)(floats), floats, metric)
            print(md_row(scheme, precision, metric, f"{r.cos_min:.5f}", f"{r.same_neighbour:.0%}",
                         f"{r.spearman:.4f}", f"{r.spearman_min:.4f}"))


def batch_noise(emb, texts: list[str], codebook: dict) -> None:
    """A text embedded alone vs inside a batch: how far the floats move, and the int8 codes with them,
    packed as usual and batch-invariant."""
    from gguf_embed.heads.precision import quantize

    for invariant in (False, True):
        batch = emb.embed(texts, truncate="end", batch_invariant=invariant).embeddings
        alone = np.stack([emb.embed([t], truncate="end", batch_invariant=invariant).embeddings[0] for t in texts])
        a, b = quantize(alone, "int8", **codebook), quantize(batch, "int8", **codebook)
        print(f"{len(texts)} texts alone vs in one batch, {'batch-invariant' if invariant else 'packed'}: max |float "
              f"difference| {np.abs(alone - batch).max():.2e}; int8 codes that differ {float((a != b).mean()):.2%}, "
              f"by at most {int(np.abs(a.astype(int) - b).max())}")


def invariance_cost(emb, texts: list[str], reps: int = 2) -> None:
    """Texts per second packed vs batch-invariant (each text in a batch of its own), best of ``reps``."""
    runs = {invariant: (lambda invariant=invariant: emb.embed(texts, truncate="end", batch_invariant=invariant))
            for invariant in (False, True)}
    best = {invariant: t.best for invariant, t in interleaved(runs, reps).items()}
    print(f"{len(texts)} corpus sentences: packed {len(texts) / best[False]:.0f} texts/s, batch-invariant "
          f"{len(texts) / best[True]:.0f} texts/s ({best[False] / best[True]:.2f}x)")


def ranges_choices(floats: np.ndarray, index) -> None:
    """How the way int8 ranges are taken from the calibration rows shows on the corpus's vectors."""
    from gguf_embed.heads.pooling import postprocess, row_cosines
    from gguf_embed.heads.precision import dequantize, quantize, ranges_from

    cal = postprocess(np.load(index.manifest["quantization"]["calibration_file"]), None, True)
    choices = {f"min/max widened by {m:g} of the width": ranges_from(cal, m) for m in (0.0, 0.1, 0.2, 0.5)}
    for lo in (0.5, 2.0):
        choices[f"percentiles {lo:g}-{100 - lo:g}"] = np.percentile(cal, [lo, 100 - lo], axis=0).astype(np.float32)
    print(f"int8 ranges from the {len(cal)} calibration vectors, cos(dequantised, float) over the corpus:")
    print(md_header("ranges", "min", "p1", "mean", "components clipped"))
    for name, r in choices.items():
        c = row_cosines(dequantize(quantize(floats, "int8", r), "int8", r), floats)
        clipped = float(((floats < r[0]) | (floats > r[1])).mean())
        print(md_row(name, f"{c.min():.5f}", f"{np.percentile(c, 1):.5f}", f"{c.mean():.5f}", f"{clipped:.2%}"))


if __name__ == "__main__":
    main()

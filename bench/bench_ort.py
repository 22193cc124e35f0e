"""gguf-embed against ONNX Runtime (the engine of fastembed and infinity) in one run, speed and quality side by side.

    .venv/bin/pip install -e '.[bench]'               # onnxruntime, onnx
    .venv/bin/python bench/bench_ort.py [--threads 2] [--reps 3] [--quick]

The model is the packaged all-MiniLM-L6-v2 (no download): exported here to ONNX from the
transformers model (``torch.onnx.export``; mean pooling and L2 normalisation in numpy, as
fastembed does), then ORT fp32 and ORT dynamic int8 (``onnxruntime.quantization.quantize_dynamic``),
each in input order (fastembed's way) and length-sorted (infinity's way), in batches of 32 padded
to their longest text, tokenised by Hugging Face's fast tokenizer; against gguf-embed's Embedder
(which sorts and packs by itself) at F16, BF16, Q8_0 and F32. Texts: short (~15 tokens) and long
(~400 tokens; the GGUFs are converted with a 512-token limit so they fit untruncated everywhere).

Quality: cosine of every vector to sentence-transformers fp32 on the same texts (min / mean).
Speed: every configuration once per repetition, repetitions interleaved, best of ``--reps``
(the machine may be shared: interleaving spreads other load over all configurations alike).
Ratios: the fastest ORT path's time over each configuration's, same workload, same run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from common import interleaved, make_texts, md_header, md_row, parser, work_dir

ORT_BATCH = 32
QUANTS = ("F16", "BF16", "Q8_0", "F32")


def export_onnx(src: Path, out: Path) -> Path:
    import torch
    from transformers import AutoModel

    class Hidden(torch.nn.Module):  # keyword arguments: transformers' positional order is not stable
        def __init__(self):
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(src)).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    model = Hidden().eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "seq"}
    with torch.no_grad():
        torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(out), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "last_hidden_state": axes})
    return out


def ort_runner(path: Path, tokenizer, threads: int, sort: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(texts: list[str]) -> np.ndarray:
        enc = tokenizer.encode_batch(texts)  # no padding here: each batch is padded to its own longest
        order = sorted(range(len(texts)), key=lambda i: len(enc[i].ids)) if sort else list(range(len(texts)))
        out = np.empty((len(texts), 384), np.float32)
        for a in range(0, len(order), ORT_BATCH):
            idx = order[a:a + ORT_BATCH]
            n = max(len(enc[i].ids) for i in idx)
            ids = np.zeros((len(idx), n), np.int64)
            mask = np.zeros((len(idx), n), np.int64)
            for r, i in enumerate(idx):
                ids[r, :len(enc[i].ids)] = enc[i].ids
                mask[r, :len(enc[i].ids)] = 1
            h = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[..., None].astype(np.float32)
            v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out[idx] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    return run


def setup(work: Path, threads: int) -> tuple[dict, object]:
    """name -> run(texts) -> vectors, for every configuration; and the fp32 reference."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from gguf_embed import Embedder
    from gguf_embed.convert import convert_model
    from tools.models.tiny import minilm_dir

    src = minilm_dir()
    fp32 = export_onnx(src, work / "minilm.onnx")
    int8 = work / "minilm-int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.enable_truncation(512)
    tok.no_padding()
    runs = {}
    for label, path in (("ORT fp32", fp32), ("ORT int8", int8)):
        for sort in (False, True):
            runs[f"{label}, {'length-sorted' if sort else 'input order'}"] = ort_runner(path, tok, threads, sort)
    for q in QUANTS:
        gguf = convert_model("all-minilm-l6-v2", work / f"minilm-{q}.gguf", q, max_tokens=512).path
        emb = Embedder(gguf, n_threads=threads)
        runs[f"gguf-embed {q}"] = lambda texts, emb=emb: emb.embed(texts).embeddings
    st = SentenceTransformer(str(src), device="cpu")
    st.max_seq_length = 512
    return runs, st


def measure(runs: dict, st, workloads: dict, reps: int) -> dict:
    results = {}
    for wl, texts in workloads.items():
        ref = st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        for name, run in runs.items():
            c = np.sum(run(texts) * ref, axis=1)  # also the warm-up
            results[(wl, name)] = {"cos_min": float(c.min()), "cos_mean": float(c.mean()), "seconds": float("inf")}
    timed = {(wl, name): (lambda run=run, texts=texts: run(texts))
             for wl, texts in workloads.items() for name, run in runs.items()}
    for key, timing in interleaved(timed, reps).items():
        results[key]["seconds"] = timing.best
    return results


def table(results: dict, workloads: dict) -> list[str]:
    lines = [md_header("workload", "configuration", "texts/s", "vs fastest ORT", "cos min", "cos mean")]
    for wl, texts in workloads.items():
        rows = {name: r for (w, name), r in results.items() if w == wl}
        ort_best = min(r["seconds"] for name, r in rows.items() if name.startswith("ORT"))
        for name, r in rows.items():
            lines.append(md_row(wl, name, f"{len(texts) / r['seconds']:.1f}", f"{ort_best / r['seconds']:.2f}x",
                                f"{r['cos_min']:.5f}", f"{r['cos_mean']:.5f}"))
    return lines


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="best of N, repetitions interleaved")
    ap.add_argument("--quick", action="store_true", help="a tenth of the texts, best of 2")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import logging

    import torch

    logging.getLogger("gguf").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    scale, reps = (10, min(args.reps, 2)) if args.quick else (1, args.reps)
    workloads = {"short (~15 tok)": make_texts(2000 // scale, 11, 1), "long (~400 tok)": make_texts(200 // scale, 380, 2)}
    work = work_dir("gguf-embed-bench-ort-")
    runs, st = setup(work, args.threads)
    results = measure(runs, st, workloads, reps)
    cmd = "python bench/bench_ort.py " + " ".join(sys.argv[1:])
    print(f"\nall-MiniLM-L6-v2, {args.threads} threads, best of {reps} (interleaved); `{cmd.strip()}`\n")
    print("\n".join(table(results, workloads)))
    if args.json:
        args.json.write_text(json.dumps({f"{w} | {n}": r for (w, n), r in results.items()}, indent=1))


if __name__ == "__main__":
    main()

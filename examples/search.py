"""Rank the lines of examples/sample.txt against a query with the Python API."""

import argparse
from pathlib import Path

import numpy as np

from gguf_embed import Embedder

parser = argparse.ArgumentParser()
parser.add_argument("query")
parser.add_argument("--model", default="all-minilm-l6-v2")
parser.add_argument("--models-dir", type=Path)
parser.add_argument("--docs", type=Path, default=Path(__file__).with_name("sample.txt"))
args = parser.parse_args()

docs = [line for line in args.docs.read_text(encoding="utf-8").splitlines() if line.strip()]
with Embedder(args.model, models_dir=args.models_dir) as emb:
    d = emb.embed(docs, input_type="document").embeddings
    q = emb.embed([args.query], input_type="query").embeddings[0]
scores = d @ q
print(f"query: {args.query}")
for i in np.argsort(-scores)[:3]:
    print(f"  {scores[i]:.3f}  {docs[i]}")

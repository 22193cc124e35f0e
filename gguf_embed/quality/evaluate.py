"""What a quantisation costs in quality: agreement with a reference model, and a human benchmark.

- ``compare(vectors, reference)``: per-text cosine between a model's vectors and a
  reference's (min, 1st percentile, mean) and the Spearman rank correlation of the two
  pairwise similarity matrices (does the model still order neighbours the same way?).
- ``lee_benchmark(encode)``: the Lee et al. (2005) document-similarity benchmark, 50
  news documents and the averaged human similarity ratings of their 1,225 pairs, read
  from the test data that the ``gensim`` package ships (``pip install gguf-embed[eval]``);
  Spearman and Pearson correlation of the model's cosine similarities with the ratings.

Statistics are plain numpy (average ranks for ties, as scipy's ``spearmanr`` does).
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import keys
from ..errors import EvalError
from ..heads.pooling import l2_normalize
from ..model.inspect import importance_matrix
from ..text.files import read_lines
from . import texts as builtin

__all__ = [
    "EvalError", "rankdata", "pearson", "spearman", "compare", "Agreement", "LeeResult",
    "lee_data", "lee_benchmark", "read_texts_file", "report", "gguf_encoder",
]

LEE_DOCS = "lee.cor"
LEE_RATINGS = "similarities0-1.txt"

Encode = Callable[[Sequence[str]], np.ndarray]


# --- statistics ---------------------------------------------------------------------


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given the average of the ranks they span."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or len(a) < 2:
        raise ValueError("pearson needs two vectors of the same length (at least 2)")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(rankdata(a), rankdata(b))


def _unit(v: np.ndarray) -> np.ndarray:
    return l2_normalize(v, dtype=np.float64)


def _pair_sims(v: np.ndarray) -> np.ndarray:
    u = _unit(v)
    return (u @ u.T)[np.triu_indices(len(u), 1)]


# --- agreement with a reference -----------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    n_texts: int
    cos_min: float
    cos_p1: float
    cos_mean: float
    spearman: float  # rank agreement of the pairwise similarity matrices
    worst_index: int

    def to_dict(self) -> dict:
        return asdict(self)


def compare(vectors: np.ndarray, reference: np.ndarray) -> Agreement:
    vectors, reference = np.asarray(vectors), np.asarray(reference)
    if vectors.shape[0] != reference.shape[0]:
        raise EvalError(f"{vectors.shape[0]} vectors against {reference.shape[0]} reference vectors")
    if vectors.shape[1] != reference.shape[1]:
        raise EvalError(f"the model has {vectors.shape[1]} dimensions, the reference {reference.shape[1]}")
    cos = (_unit(vectors) * _unit(reference)).sum(axis=1)
    rank = spearman(_pair_sims(vectors), _pair_sims(reference)) if len(cos) > 2 else float("nan")
    return Agreement(len(cos), float(cos.min()), float(np.percentile(cos, 1)), float(cos.mean()), rank, int(cos.argmin()))


# --- Lee et al. (2005) --------------------------------------------------------------


@dataclass(frozen=True)
class LeeResult:
    spearman: float
    pearson: float
    pairs: int
    documents: int

    def to_dict(self) -> dict:
        return asdict(self)


def _gensim_test_data() -> Path:
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise EvalError("the Lee benchmark is read from gensim's test data; install it with: pip install 'gguf-embed[eval]'")
    folder = Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data"
    for name in (LEE_DOCS, LEE_RATINGS):
        if not (folder / name).is_file():
            raise EvalError(f"gensim's test data has no {name} (looked in {folder})")
    return folder


def lee_data() -> tuple[list[str], np.ndarray]:
    """The 50 documents and the 1,225 averaged human ratings (upper triangle, row by row)."""
    folder = _gensim_test_data()
    docs = [line.strip() for line in (folder / LEE_DOCS).read_text(encoding="latin-1").splitlines() if line.strip()]
    matrix = np.loadtxt(folder / LEE_RATINGS)
    if matrix.shape != (len(docs), len(docs)):
        raise EvalError(f"the Lee ratings are {matrix.shape}, expected {len(docs)}x{len(docs)}")
    return docs, matrix[np.triu_indices(len(docs), 1)]


def lee_benchmark(encode: Encode) -> LeeResult:
    docs, human = lee_data()
    sims = _pair_sims(np.asarray(encode(docs)))
    return LeeResult(spearman(sims, human), pearson(sims, human), len(human), len(docs))


# --- inputs ---------------------------------------------------------------------------


def read_texts_file(path: Path) -> list[str]:
    texts = read_lines([str(path)])
    if len(texts) < 3:
        raise EvalError(f"{path} has {len(texts)} non-empty lines; give at least 3 texts")
    return texts


def st_encoder(folder: Path, prompt: str = "", device: str = "cpu") -> Encode:
    """A Hugging Face folder through sentence-transformers (fp32), when it is installed."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EvalError(
            "sentence-transformers is not installed; convert the reference to a F32 GGUF and pass that instead"
        ) from None
    try:
        model = SentenceTransformer(str(folder), device=device)
    except (OSError, ValueError) as exc:
        raise EvalError(f"cannot load {folder} with sentence-transformers: {str(exc).splitlines()[0]}") from None

    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), prompt=prompt or None, batch_size=16, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False)

    return encode


def gguf_encoder(emb, input_type: str | None) -> Encode:
    return lambda texts: emb.embed(list(texts), input_type=input_type, truncate="end").embeddings


def report(emb, *, reference: str | None, texts_file: Path | None, task: str | None, input_type: str | None,
           open_reference: Callable, say: Callable[[str], None] = lambda line: None) -> dict:
    """``gguf-embed eval``'s report: agreement with ``reference`` (a Hugging Face folder through
    sentence-transformers, or a GGUF opened with ``open_reference``) and/or the Lee benchmark."""

    meta = emb.session.gguf.meta
    out: dict = {"model": str(emb.info.path), "quantization": emb.info.file_type_name,
                 "tensor_mix": meta.get(keys.QUANT_MIX), "importance_matrix": importance_matrix(meta)}
    encode, ref_encode, ref_emb = gguf_encoder(emb, input_type), None, None
    try:
        if reference is not None:
            if Path(reference).expanduser().is_dir():
                ref_encode = st_encoder(Path(reference).expanduser(), emb.prompt_for(input_type, None))
            else:
                ref_emb = open_reference(reference)
                ref_encode = gguf_encoder(ref_emb, input_type)
            texts = read_texts_file(texts_file) if texts_file else builtin.texts()
            out["texts"] = str(texts_file) if texts_file else "built-in multilingual set"
            say(f"embedding {len(texts)} texts with both models")
            out["reference"] = {"path": reference, **compare(encode(texts), ref_encode(texts)).to_dict()}
        if task == "lee":
            out["lee"] = lee_benchmark(encode).to_dict()
            if ref_encode is not None:
                out["reference_lee"] = lee_benchmark(ref_encode).to_dict()
    finally:
        if ref_emb is not None:
            ref_emb.close()
    return out

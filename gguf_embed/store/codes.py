"""int8/uint8 ranges fixed per model, and compressed vectors made with them.

A model's ranges come from one calibration set (the built-in texts of ``quality.texts``, embedded
as documents and, where the model has a query prompt, as queries). Their raw pooled rows are
stored once per model file, keyed by its sha256, in ``ranges_dir()`` (``<sha256>.calibration.npy``),
each text run in a batch of its own (batch-invariant rows, the same with any batch settings);
the symmetric scale (the default scheme) or the per-dimension ranges for any dimension count and
normalisation are computed from those rows by plain float32 arithmetic (``heads.precision.scale_from``,
``ranges_from``), so every process that finds the file gets the same codes. Texts are embedded
batch-invariant too (``Embedder.embed(batch_invariant=True)``), so a text's codes never depend on
what it was batched with.

    from gguf_embed.store.codes import embed_codes
    codes = embed_codes(emb, ["hello", "world"], "int8")   # int8 (2, 384)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..heads.pooling import postprocess
from ..heads.precision import SYMMETRIC_LEVELS, check_precision, check_scheme, code_dtype, code_width, quantize, \
    ranges_digest, ranges_from, scale_from
from ..model.gguf_file import sha256_file
from ..quality.texts import texts as builtin_texts
from .cache import default_cache_path, remembered_sha256

__all__ = ["ranges_dir", "calibration_seqs", "CalibrationStore", "Quantizer", "quantizer_from_rows",
           "model_quantizer", "embed_codes", "CALIBRATION_SET", "DEFAULT_SCHEME"]

CALIBRATION_SET = "gguf_embed.quality.texts (v1): as documents, and as queries where the model has a query prompt"
CALIBRATION_SUFFIX = ".calibration.npy"
#: int8/uint8 codes whose raw dot products rank like the floats (docs/guides/compressed-vectors.md)
DEFAULT_SCHEME = "symmetric"
SCHEME_NOTES = {
    "symmetric": f"int8 = clip(round(x * {SYMMETRIC_LEVELS} / scale), -{SYMMETRIC_LEVELS}, {SYMMETRIC_LEVELS}); "
                 "uint8 = int8 + 128; x ~ (int8 code) * scale / 127. Raw int8 dot products rank like the floats; "
                 "raw uint8 codes rank like them by Euclidean distance, not by dot product",
    "per-dimension": "sentence-transformers' quantize_embeddings: uint8 = clip(floor((x - min) / step), 0, 255), "
                     "step = (max - min) / 255 per dimension; int8 = uint8 - 128",
}


def ranges_dir() -> Path:
    """``$GGUF_EMBED_RANGES``, else a ``ranges`` folder next to the default vector cache."""
    env = os.environ.get("GGUF_EMBED_RANGES")
    return Path(env).expanduser() if env else default_cache_path().parent / "ranges"


def calibration_seqs(emb) -> list[np.ndarray]:
    """The calibration texts framed as the model embeds them; a query that frames like its
    document (no query prompt) is not repeated."""
    texts = builtin_texts()
    seqs = emb.tokenize(texts, input_type="document", truncate="end")
    if emb.info.prompts.get("query", "") != emb.info.prompts.get("document", ""):
        seqs += emb.tokenize(texts, input_type="query", truncate="end")
    return seqs


class CalibrationStore:
    """The calibration rows of each model file, one ``.npy`` per sha256, written atomically."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder).expanduser() if folder is not None else ranges_dir()

    def path(self, model_sha256: str) -> Path:
        return self.folder / f"{model_sha256}{CALIBRATION_SUFFIX}"

    def load(self, model_sha256: str, n_embd: int) -> np.ndarray | None:
        path = self.path(model_sha256)
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        ok = rows.dtype == np.float32 and rows.ndim == 2 and rows.shape[1] == n_embd and len(rows) >= 2
        return rows if ok and np.isfinite(rows).all() else None

    def save(self, model_sha256: str, rows: np.ndarray) -> Path:
        path = self.path(model_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(rows, dtype=np.float32))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path


@dataclass(frozen=True)
class Quantizer:
    """Float vectors (n, dims) in, codes of ``precision`` out; for int8 and uint8, a ``scale``
    (``scheme`` symmetric) or ``ranges`` (per-dimension)."""

    precision: str
    dims: int
    ranges: np.ndarray | None = None
    calibration: Path | None = None  # the rows the scale or ranges came from
    scheme: str | None = None  # int8 / uint8 only
    scale: np.float32 | None = None

    @property
    def width(self) -> int:
        return code_width(self.precision, self.dims)

    @property
    def dtype(self) -> np.dtype:
        return code_dtype(self.precision)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return quantize(vectors, self.precision, self.ranges, scale=self.scale)

    def describe(self) -> dict:
        """What a manifest records: the precision, and the scheme with its scale or ranges and where
        they came from."""
        out: dict = {"precision": self.precision, "dimensions": self.dims, "stored_width": self.width,
                     "dtype": self.dtype.name}
        if self.precision.endswith("binary"):
            out["bits"] = "x > 0, packed eight to a byte, most significant bit first" + (
                "; stored as the byte minus 128" if self.precision == "binary" else "")
        if self.scheme is not None:
            out.update(scheme=self.scheme, codes=SCHEME_NOTES[self.scheme])
        if self.scale is not None:
            out.update(scale=float(self.scale))
        if self.ranges is not None:
            out.update(ranges_sha256=ranges_digest(self.ranges), ranges={"min": self.ranges[0].tolist(),
                                                                        "max": self.ranges[1].tolist()})
        if self.scheme is not None:
            out.update(calibration_set=CALIBRATION_SET,
                       calibration_file=str(self.calibration) if self.calibration else None,
                       calibration_sha256=sha256_file(self.calibration) if self.calibration else None)
        return out


def quantizer_from_rows(precision: str, rows: np.ndarray | None, dims: int, normalize: bool,
                        calibration: Path | None = None, scheme: str = DEFAULT_SCHEME) -> Quantizer:
    """The quantizer for vectors cut to ``dims`` (and normalised or not) from raw calibration rows."""
    if precision not in ("int8", "uint8"):
        return Quantizer(precision, dims)
    vectors = postprocess(rows, dims, normalize)
    if check_scheme(scheme) == "symmetric":
        return Quantizer(precision, dims, None, calibration, scheme, scale_from(vectors))
    return Quantizer(precision, dims, ranges_from(vectors), calibration, scheme)


def model_quantizer(emb, precision: str, *, dimensions: int | None = None, normalize: bool = True,
                    model_sha256: str | None = None, store: CalibrationStore | None = None,
                    rows: Callable[[list], np.ndarray] | None = None, scheme: str = DEFAULT_SCHEME) -> Quantizer:
    """The quantizer of ``emb``'s model for ``precision`` (int8 and uint8 in ``scheme``); the calibration
    set is embedded (with ``rows``, default the model's session) only the first time a model file is seen."""
    dims = dimensions or emb.dimensions
    check_precision(precision, dims)
    check_scheme(scheme)
    if precision not in ("int8", "uint8"):
        return Quantizer(precision, dims)
    store = store or CalibrationStore()
    sha = model_sha256 or remembered_sha256(emb.info.path)
    cal = store.load(sha, emb.dimensions)
    if cal is None:
        cal = (rows or (lambda seqs: emb.session.rows(seqs, alone=True)))(calibration_seqs(emb))
        store.save(sha, cal)
    return quantizer_from_rows(precision, cal, dims, normalize, store.path(sha), scheme)


def embed_codes(emb, texts: Sequence[str], precision: str, *, input_type: str | None = None,
                instruction: str | None = None, dimensions: int | None = None, normalize: bool = True,
                truncate: str = "error", scheme: str = DEFAULT_SCHEME) -> np.ndarray:
    """``texts`` embedded batch-invariant and compressed: int8/uint8 (n, d) in ``scheme``, or packed bits
    (n, d/8) for binary/ubinary; a text's codes are the same alone, in any batch and in any process."""
    emb.check_dimensions(dimensions)
    q = model_quantizer(emb, precision, dimensions=dimensions, normalize=normalize, scheme=scheme)
    vecs = emb.embed(texts, input_type=input_type, instruction=instruction, dimensions=dimensions,
                     normalize=normalize, truncate=truncate, batch_invariant=True).embeddings
    return q(vecs)

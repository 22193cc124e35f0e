"""Compressed vectors: int8, uint8, binary and ubinary codes from float vectors, and back. Pure numpy.

The definitions are Cohere's and sentence-transformers' (``quantize_embeddings``):

* ``ubinary``: one bit per dimension, ``x > 0``, packed eight to a byte, most significant bit
  first (``np.packbits``); ``binary``: the same bytes minus 128, as int8.
* int8 and uint8 in one of two schemes (``CODE_SCHEMES``):

  - ``symmetric`` (the default): one ``scale`` for every dimension, ``int8 = clip(round(x * 127 /
    scale), -127, 127)``, so 0 is code 0 and a raw dot product of two int8 code vectors is
    ``(127 / scale)**2`` times the float dot product up to rounding: a vector store can score the
    codes as they are. ``uint8`` is int8 + 128 (zero at 128): Euclidean distance between raw uint8
    codes is the int8 one (the shift cancels), but a raw uint8 dot product carries the offset terms
    ``128 * (sum(a) + sum(b)) + 128**2 * d`` and does not rank like the floats.
  - ``per-dimension`` (sentence-transformers' ``quantize_embeddings``): per dimension,
    ``floor((x - lo) / step)`` clipped to 0..255 with ``step = (hi - lo) / 255``; ``int8``: the same
    minus 128. Dequantised, this is as close as the symmetric codes; raw, each dimension's offset
    makes dot products rank poorly.

The scale and ranges are fixed per model (``scale_from``, ``ranges_from``: from a calibration set,
never from the batch at hand), so a vector's codes depend on that vector alone.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import InvalidInputError
from ..choices import CODE_SCHEMES, PRECISIONS

__all__ = ["PRECISIONS", "CODE_SCHEMES", "check_precision", "check_scheme", "code_width", "code_dtype", "quantize",
           "dequantize", "pack_bits", "unpack_signs", "hamming", "ranges_from", "ranges_digest", "scale_from",
           "RANGE_MARGIN", "SYMMETRIC_LEVELS"]

#: the calibration range of each dimension is widened by this fraction of its width on each side:
#: a set of a few hundred texts underestimates the extremes, and a clipped component costs far
#: more than the coarser step (docs/benchmarks/compressed-vectors.md)
RANGE_MARGIN = 0.5
#: the largest symmetric int8 code: codes run -127..127 (uint8 1..255), so +x and -x get opposite codes
SYMMETRIC_LEVELS = 127
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def check_precision(precision: str, dims: int | None = None, param: str = "precision") -> str:
    """``precision`` when it is known (and, for the bit types, ``dims`` is a multiple of 8)."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})", param=param)
    if dims is not None and precision.endswith("binary") and dims % 8:
        raise InvalidInputError(f"{precision} vectors pack 8 dimensions to a byte; {dims} dimensions is not a "
                                "multiple of 8 (choose another dimension count)", param=param)
    return precision


def check_scheme(scheme: str, param: str = "code_scheme") -> str:
    if scheme not in CODE_SCHEMES:
        raise InvalidInputError(f"code scheme must be one of {', '.join(CODE_SCHEMES)} (got {scheme!r})", param=param)
    return scheme


def code_width(precision: str, dims: int) -> int:
    """Values per stored vector: ``dims``, or ``dims / 8`` bytes for the bit types."""
    return dims // 8 if precision.endswith("binary") else dims


def code_dtype(precision: str) -> np.dtype:
    return np.dtype({"float": np.float32, "int8": np.int8, "binary": np.int8}.get(precision, np.uint8))


def pack_bits(vectors: np.ndarray) -> np.ndarray:
    """uint8 (n, d/8): bit i of a row is ``x[i] > 0``, most significant bit first."""
    vectors = np.atleast_2d(vectors)
    check_precision("ubinary", vectors.shape[1])
    return np.packbits(vectors > 0, axis=-1)


def unpack_signs(packed: np.ndarray, dims: int) -> np.ndarray:
    """float32 (n, dims) of +1 / -1 from ubinary or binary codes."""
    packed = np.atleast_2d(packed)
    if packed.dtype == np.int8:
        packed = (packed.astype(np.int16) + 128).astype(np.uint8)
    bits = np.unpackbits(packed, axis=-1)[:, :dims]
    return bits.astype(np.float32) * 2 - 1


def hamming(query: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """int32 (n_queries, n_rows): differing bits between packed uint8 queries and rows."""
    query, codes = np.atleast_2d(query), np.atleast_2d(codes)
    out = np.empty((len(query), len(codes)), dtype=np.int32)
    for i, q in enumerate(query):
        out[i] = _POPCOUNT[np.bitwise_xor(codes, q)].sum(axis=1, dtype=np.int32)
    return out


def ranges_from(calibration: np.ndarray, margin: float = RANGE_MARGIN) -> np.ndarray:
    """float32 (2, d): each dimension's calibration minimum and maximum, widened by ``margin`` of
    the width on each side. Plain float32 arithmetic: the same rows give the same ranges anywhere."""
    calibration = np.atleast_2d(np.asarray(calibration, dtype=np.float32))
    if len(calibration) < 2:
        raise ValueError("int8 ranges need at least two calibration vectors")
    lo, hi = calibration.min(axis=0), calibration.max(axis=0)
    pad = (hi - lo) * np.float32(margin)
    return np.stack([lo - pad, hi + pad]).astype(np.float32)


def scale_from(calibration: np.ndarray) -> np.float32:
    """The symmetric scale: the largest |x| of any dimension over the calibration vectors (float32, the
    same rows give the same scale anywhere). A high percentile instead clips real texts (bench_precision)."""
    calibration = np.atleast_2d(np.asarray(calibration, dtype=np.float32))
    if len(calibration) < 2:
        raise ValueError("int8 scales need at least two calibration vectors")
    top = np.abs(calibration).max()
    return np.float32(top) if top > 0 else np.float32(1)


def _symmetric(vectors: np.ndarray, precision: str, scale) -> np.ndarray:
    factor = np.float32(SYMMETRIC_LEVELS) / np.float32(scale)
    codes = np.clip(np.rint(vectors * factor), -SYMMETRIC_LEVELS, SYMMETRIC_LEVELS)
    return (codes + 128).astype(np.uint8) if precision == "uint8" else codes.astype(np.int8)


def ranges_digest(ranges: np.ndarray) -> str:
    """sha256 of the ranges' little-endian float32 bytes: what a manifest names them by."""
    return hashlib.sha256(np.ascontiguousarray(ranges, dtype="<f4").tobytes()).hexdigest()


def _steps(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranges = np.asarray(ranges, dtype=np.float32)
    steps = (ranges[1] - ranges[0]) / np.float32(255)
    return ranges[0], np.where(steps == 0, np.float32(1), steps).astype(np.float32)


def quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None = None, *,
             scale: float | None = None) -> np.ndarray:
    """Codes for float ``vectors`` (n, d); for int8 and uint8, ``scale`` (symmetric) or ``ranges`` (2, d)."""
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    check_precision(precision, vectors.shape[1])
    if precision == "float":
        return vectors
    if precision.endswith("binary"):
        packed = pack_bits(vectors)
        return packed if precision == "ubinary" else (packed.astype(np.int16) - 128).astype(np.int8)
    if scale is not None:
        return _symmetric(vectors, precision, scale)
    if ranges is None or np.shape(ranges) != (2, vectors.shape[1]):
        raise ValueError(f"{precision} needs ranges of shape (2, {vectors.shape[1]})")
    lo, steps = _steps(ranges)
    codes = np.clip(np.floor((vectors - lo) / steps), 0, 255)
    return codes.astype(np.uint8) if precision == "uint8" else (codes - 128).astype(np.int8)


def dequantize(codes: np.ndarray, precision: str, ranges: np.ndarray | None = None,
               dims: int | None = None, *, scale: float | None = None) -> np.ndarray:
    """float32 vectors back from codes: symmetric codes times ``scale / 127``, per-dimension codes'
    bucket centres, or +1/-1 per bit (``dims`` for the bit types; default 8 per byte)."""
    codes = np.atleast_2d(codes)
    if precision == "float":
        return codes.astype(np.float32, copy=False)
    if precision.endswith("binary"):
        return unpack_signs(codes, dims or codes.shape[1] * 8)
    if scale is not None:
        zero = np.float32(128) if precision == "uint8" else np.float32(0)
        return (codes.astype(np.float32) - zero) * (np.float32(scale) / np.float32(SYMMETRIC_LEVELS))
    lo, steps = _steps(ranges)
    values = codes.astype(np.float32) + (np.float32(128.5) if precision == "int8" else np.float32(0.5))
    return lo + values * steps

"""The extra heads a GGUF carries as metadata (bge-m3's sparse and ColBERT heads, written by
``convert.m3_heads``), read into ``heads.multivector.Head`` objects."""

from __future__ import annotations

import base64
import binascii

import numpy as np

from .. import keys
from ..errors import ModelLoadError
from ..heads.multivector import Head
from .gguf_file import GGUFFile

__all__ = ["read_head", "sparse_skip_ids"]


def _f32(value) -> np.ndarray | None:
    """Little-endian float32 values from a base64 string (the converter's form), or None."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return np.frombuffer(raw, dtype="<f4").copy() if len(raw) % 4 == 0 else None


def read_head(gguf: GGUFFile, kind: str, n_embd: int) -> Head:
    """The ``kind`` head ("sparse" | "colbert"): weight (rows, n_embd) and bias (rows,), float32."""
    weight = _f32(gguf.get(keys.HEAD_WEIGHT.format(kind)))
    bias = _f32(gguf.get(keys.HEAD_BIAS.format(kind)))
    rows = gguf.get(keys.HEAD_ROWS.format(kind))
    if weight is None or bias is None or not isinstance(rows, int) or rows <= 0 \
            or weight.size != rows * n_embd or bias.size != rows:
        raise ModelLoadError(f"{gguf.path}: the {kind} head's metadata is missing or has the wrong size")
    return Head(weight.astype(np.float32).reshape(rows, n_embd), bias.astype(np.float32).reshape(rows))


def sparse_skip_ids(gguf: GGUFFile) -> tuple[int, ...]:
    """Token ids that get no lexical weight: the converter's list, else the file's special tokens."""
    listed = gguf.ndarray(keys.HEAD_SKIP_IDS)
    if listed is not None:
        return tuple(int(i) for i in listed.reshape(-1))
    kinds = ("cls", "bos", "eos", "seperator", "padding", "unknown")
    ids = (gguf.get(f"tokenizer.ggml.{k}_token_id") for k in kinds)
    return tuple(sorted({int(i) for i in ids if isinstance(i, int)}))

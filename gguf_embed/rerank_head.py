"""A reranker's relevance head as numpy, read once from the GGUF.

The head is llama.cpp's RANK head: an optional pooler (``cls``: dense + tanh, BERT
cross-encoders) and the output rows (``cls.output``). Two output rows are a yes/no pair
(Qwen3-Reranker: the LM head's "yes" and "no" rows), scored as ``l_yes - l_no``; one row is
a relevance logit. Probabilities are the logistic of that score, which for a yes/no pair is
exactly ``softmax([l_yes, l_no])[0]``.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelLoadError

__all__ = ["RerankHead", "sigmoid", "read_tensors"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


@dataclass(frozen=True)
class RerankHead:
    out_w: np.ndarray  # (n_out, d) float32, n_out in (1, 2)
    out_b: np.ndarray | None = None  # (n_out,)
    pooler_w: np.ndarray | None = None  # (d, d)
    pooler_b: np.ndarray | None = None  # (d,)

    def __post_init__(self):
        if self.out_w.ndim != 2 or self.out_w.shape[0] not in (1, 2):
            raise ModelLoadError(f"unsupported rerank head of shape {self.out_w.shape} (one or two output rows)")

    def raw(self, hidden: np.ndarray) -> np.ndarray:
        """Relevance logits (n,) float64 for hidden states (n, d)."""
        x = np.asarray(hidden, dtype=np.float64)
        if self.pooler_w is not None:
            x = x @ self.pooler_w.T.astype(np.float64)
            if self.pooler_b is not None:
                x = x + self.pooler_b
            x = np.tanh(x)
        logits = x @ self.out_w.T.astype(np.float64)
        if self.out_b is not None:
            logits = logits + self.out_b
        return logits[:, 0] - logits[:, 1] if logits.shape[1] == 2 else logits[:, 0]

    def scores(self, hidden: np.ndarray, raw: bool = False) -> np.ndarray:
        r = self.raw(hidden)
        return r if raw else sigmoid(r)

    @classmethod
    def from_gguf(cls, path: Path) -> "RerankHead":
        try:
            tensors = read_tensors(Path(path), "cls.")
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot read the rerank head of {path}: {exc}") from None
        if "cls.output.weight" not in tensors:
            raise ModelLoadError(f"{path} has no rerank head (cls.output.weight); convert it again with gguf-embed convert")
        get = tensors.get
        return cls(get("cls.output.weight"), get("cls.output.bias"), get("cls.weight"), get("cls.bias"))


# --- a minimal GGUF tensor reader ------------------------------------------------------
# gguf.GGUFReader parses every metadata value in Python (seconds for a 150k-token
# vocabulary); the head needs only a few small tensors, so the metadata is skipped.

_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self) -> str:
        n = self.unpack("Q")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos]).decode("utf-8", "replace")

    def skip_value(self, vtype: int):
        if vtype == _STRING:
            n = self.unpack("Q")
            self.pos += n
        elif vtype == _ARRAY:
            etype, count = self.unpack("IQ")
            if etype in _SCALAR:
                self.pos += _SCALAR[etype] * count
            else:
                for _ in range(count):
                    self.skip_value(etype)
        else:
            self.pos += _SCALAR[vtype]


def read_tensors(path: Path, prefix: str) -> dict[str, np.ndarray]:
    """The tensors whose names start with ``prefix``, dequantised to float32 (rows, cols)."""
    import gguf

    with open(path, "rb") as fh:
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        cur = _Cursor(buf)
        if bytes(buf[:4]) != b"GGUF":
            raise ValueError("not a GGUF file")
        cur.pos = 4
        _version, n_tensors, n_kv = cur.unpack("IQQ")
        alignment = 32
        for _ in range(n_kv):
            key, vtype = cur.string(), cur.unpack("I")
            if key == "general.alignment" and vtype == 4:
                alignment = cur.unpack("I")
            else:
                cur.skip_value(vtype)
        infos = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.unpack("I")
            dims = [cur.unpack("Q") for _ in range(n_dims)]
            qtype, offset = cur.unpack("IQ")
            infos.append((name, dims, qtype, offset))
        start = (cur.pos + alignment - 1) // alignment * alignment
        out = {}
        for name, dims, qtype, offset in infos:
            if not name.startswith(prefix):
                continue
            qt = gguf.GGMLQuantizationType(qtype)
            block, size = gguf.GGML_QUANT_SIZES[qt]
            rows = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
            row_bytes = dims[0] // block * size
            a = start + offset
            raw = np.frombuffer(buf[a:a + rows * row_bytes], dtype=np.uint8).reshape(rows, row_bytes)
            vals = gguf.quants.dequantize(raw, qt).astype(np.float32)
            out[name] = vals.reshape(list(reversed(dims))) if len(dims) > 1 else vals.reshape(-1)
        return out
    finally:
        buf.close()

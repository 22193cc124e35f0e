"""A reranker's relevance head as numpy, read once from the GGUF.

The head is llama.cpp's RANK head: an optional pooler (``cls``: dense + tanh, BERT
cross-encoders) and the output rows (``cls.output``). Two output rows are a yes/no pair
(Qwen3-Reranker: the LM head's "yes" and "no" rows), scored as ``l_yes - l_no``; one row is
a relevance logit. Probabilities are the logistic of that score, which for a yes/no pair is
exactly ``softmax([l_yes, l_no])[0]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelLoadError

__all__ = ["RerankHead", "sigmoid"]


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
    def from_tensors(cls, tensors: dict[str, np.ndarray], where: str, labels=None) -> "RerankHead":
        """From a GGUF's ``cls.*`` tensors (llama.cpp's names); ``labels`` (``classifier.output_labels``)
        ["no", "yes"] puts the "yes" row first, as the score needs it."""
        if "cls.output.weight" not in tensors:
            raise ModelLoadError(f"{where} has no rerank head (cls.output.weight); convert it again with gguf-embed convert")
        get = tensors.get
        out_w, out_b = get("cls.output.weight"), get("cls.output.bias")
        if out_w.ndim == 1:  # llama.cpp's quantizer writes a one-row matrix (1, d) as a vector (d,)
            out_w = out_w.reshape(1, -1)
        if isinstance(labels, list) and [str(x).lower() for x in labels] == ["no", "yes"] and len(out_w) == 2:
            out_w, out_b = out_w[::-1].copy(), None if out_b is None else out_b[::-1].copy()
        return cls(out_w, out_b, get("cls.weight"), get("cls.bias"))

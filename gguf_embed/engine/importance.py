"""The importance of each weight matrix's inputs, collected while a model embeds texts.

llama.cpp's importance matrix ("imatrix"): for every weight matrix of the layers (``blk.*``),
the sum over all the tokens it saw of the square of each input column, and the number of
input rows. Quantising a column with more weight where its inputs are large is what makes
an importance-weighted Q4 closer to the float model than a plain one.

Here the texts run exactly as they are embedded (prompts, special tokens, the appended end
token, packed batches), on a plain context where every token is an output, so the last
layer sees every token too; a decoder's graph stops at the final norm (``result_norm``),
so its LM head is neither run nor collected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ModelRuntimeError
from .ggml import ImportanceCapture

__all__ = ["Importance", "collect"]


@dataclass
class Importance:
    """``sums[name]``: (n_mat, n_in) float64 sums of squares; ``counts[name]``: input rows seen."""

    sums: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    sequences: int = 0
    tokens: int = 0

    def mean_squares(self) -> dict[str, np.ndarray]:
        """Per weight, each column's mean squared input (flattened): what llama-quantize weights with."""
        return {name: (s / max(self.counts.get(name, 0), 1)).ravel().astype(np.float32)
                for name, s in self.sums.items() if self.counts.get(name, 0) > 0}


def collect(session, seqs: list[np.ndarray], progress: Callable[[int], None] | None = None) -> Importance:
    """Run framed token sequences through ``session``'s model (a :class:`~gguf_embed.engine.session.Session`)
    with an importance-collecting eval callback."""
    cap = ImportanceCapture()
    session.runner.observe(seqs, cap, progress)
    if cap.errors:
        raise ModelRuntimeError(f"collecting the importance matrix failed: {cap.errors[0]}")
    if not cap.sums:
        raise ModelRuntimeError("the eval callback saw no weight matrix multiplications; nothing to collect")
    return Importance(cap.sums, cap.counts, len(seqs), int(sum(len(s) for s in seqs)))

"""How well int8/uint8 codes score *as they are*, the way a vector store scores them (a dot product or a
Euclidean distance on the raw codes, with no dequantisation), against the float vectors they came from.

    from gguf_embed.quality.raw_codes import raw_scoring
    raw_scoring(codes, floats)                 # RawScoring(cos_min=0.9999, same_neighbour=1.0, ...)
    raw_scoring(uint8_codes, floats, "euclidean")

For each text, its neighbours (every other text) are ranked by the raw codes and by the floats'
cosine: ``same_neighbour`` is the share of texts whose nearest neighbour is the same both ways,
``spearman`` the mean rank correlation of the two neighbour orders; ``cos_min`` is the smallest cosine
between a text's raw code vector and its float vector.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..heads.pooling import l2_normalize, row_cosines
from .evaluate import spearman

__all__ = ["RawScoring", "raw_scoring", "RAW_METRICS"]

RAW_METRICS = ("dot", "euclidean")


@dataclass(frozen=True)
class RawScoring:
    n_texts: int
    metric: str
    cos_min: float  # raw code vector against its float vector
    same_neighbour: float  # share of texts whose nearest neighbour by raw codes is the float one
    spearman: float  # mean over texts of the rank correlation of their neighbour orders
    spearman_min: float

    def to_dict(self) -> dict:
        return asdict(self)


def _scores(v: np.ndarray, metric: str) -> np.ndarray:
    if metric == "dot":
        return v @ v.T
    sq = (v * v).sum(axis=1)
    return -(sq[:, None] + sq[None, :] - 2 * (v @ v.T))  # higher is nearer


def raw_scoring(codes: np.ndarray, floats: np.ndarray, metric: str = "dot") -> RawScoring:
    """Raw ``codes`` (n, d) scored by ``metric`` against the float vectors (n, d) they encode (n >= 3)."""
    if metric not in RAW_METRICS:
        raise ValueError(f"metric must be one of {', '.join(RAW_METRICS)}")
    c, f = np.asarray(codes, dtype=np.float64), np.asarray(floats, dtype=np.float64)
    if c.shape != f.shape or len(c) < 3:
        raise ValueError("codes and floats need the same shape, with at least three rows")
    unit = l2_normalize(f, dtype=np.float64)
    cos = row_cosines(c, f)
    raw, ref = _scores(c, metric), unit @ unit.T
    same, rhos = [], []
    for i in range(len(c)):
        others = np.delete(np.arange(len(c)), i)
        same.append(others[np.argmax(raw[i, others])] == others[np.argmax(ref[i, others])])
        rhos.append(spearman(raw[i, others], ref[i, others]))
    return RawScoring(len(c), metric, float(cos.min()), float(np.mean(same)), float(np.mean(rhos)),
                      float(np.min(rhos)))

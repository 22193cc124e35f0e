"""Fitting framed token sequences into a model's limit: pure numpy, shared by embedder and reranker.

A sequence is head + body + tail: the head and tail (special tokens, a prompt's frame) are
always kept, the body is cut. ``"end"`` drops the body's end; ``"start"`` keeps the body's
first ``keep`` tokens (a prompt) and drops what follows them, so the text's end survives.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_body", "common_prefix"]


def fit_body(tokens: np.ndarray, n_head: int, n_tail: int, limit: int, truncate: str, keep: int = 0) -> np.ndarray:
    """``tokens`` cut to at most ``limit`` (already short enough: returned as is)."""
    if len(tokens) <= limit:
        return tokens
    body = tokens[n_head:len(tokens) - n_tail]
    room = max(limit - n_head - n_tail, 0)
    if truncate == "end":
        kept = body[:room]
    elif truncate == "start":
        head = min(keep, room)
        kept = np.concatenate([body[:head], body[len(body) - (room - head):]]) if room > head else body[:head]
    else:
        raise ValueError(f"unknown truncation {truncate!r}")
    return np.concatenate([tokens[:n_head], kept, tokens[len(tokens) - n_tail:]]).astype(np.int32)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n

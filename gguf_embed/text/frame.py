"""Framed token sequences: the special tokens around a text, and fitting a sequence into a limit.

A sequence is head + body + tail: the head and tail (special tokens, a prompt's frame) are
always kept, the body is cut. ``"end"`` drops the body's end; ``"start"`` keeps the body's
first ``keep`` tokens (a prompt) and drops what follows them, so the text's end survives;
``"error"`` refuses with an ``InputTooLongError`` that says by how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .. import choices
from ..errors import InputTooLongError, InvalidInputError

__all__ = ["fit_body", "common_prefix", "Frame", "special_frame", "check_truncate", "EMPTY"]

EMPTY = np.zeros(0, np.int32)
Tokenize = Callable[..., np.ndarray]  # (text, *, add_special, parse_special=False) -> ids


def check_truncate(truncate: str) -> None:
    if truncate not in choices.TRUNCATE_POLICIES:
        raise InvalidInputError(f"truncate must be one of {', '.join(choices.TRUNCATE_POLICIES)}", param="truncate")


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


EXACT_COUNT_CHARS = 1 << 20  # a text refused as too long is counted exactly up to this many characters
CLIP_MARGIN = 64  # tokens past the limit a cut text keeps, so the cut never reaches the tokens that are kept


def clip_chars(limit: int, max_piece_bytes: int) -> int:
    """How many characters of a text can reach a model that takes ``limit`` tokens: no token
    covers more characters than its vocabulary piece has bytes."""
    return (limit + 2 * CLIP_MARGIN) * max(int(max_piece_bytes), 1)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


@dataclass(frozen=True)
class Frame:
    """The special tokens the tokenizer puts before and after any text (e.g. [CLS]/[SEP], <|endoftext|>)."""

    prefix: np.ndarray
    suffix: np.ndarray

    def fit(self, tokens: np.ndarray, limit: int, truncate: str, index: int, keep: int = 0) -> np.ndarray:
        """A framed text's tokens within ``limit``: cut as ``truncate`` says, or refused."""
        if len(tokens) > limit and truncate == "error":
            raise InputTooLongError.for_input(index, len(tokens), limit)
        return fit_body(tokens, len(self.prefix), len(self.suffix), limit, truncate, keep)

    def wrap(self, ids: Sequence[int], n_vocab: int, index: int) -> np.ndarray:
        """Token ids from a client: checked against the vocabulary, special tokens added unless present."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim != 1 or len(arr) == 0:
            raise InvalidInputError(f"input {index} must be a non-empty list of token ids", param="input")
        if arr.min() < 0 or arr.max() >= n_vocab:
            raise InvalidInputError(f"input {index} has token ids outside 0..{n_vocab - 1}", param="input")
        arr = arr.astype(np.int32)
        pre, suf = self.prefix, self.suffix
        if len(pre) and not np.array_equal(arr[:len(pre)], pre):
            arr = np.concatenate([pre, arr])
        if len(suf) and not np.array_equal(arr[len(arr) - len(suf):], suf):
            arr = np.concatenate([arr, suf])
        return arr


def special_frame(tokenize: Tokenize) -> Frame:
    """Find the frame by tokenising a probe word with and without special tokens."""
    plain = tokenize("hello", add_special=False)
    full = tokenize("hello", add_special=True)
    for start in range(len(full) - len(plain) + 1):
        if np.array_equal(full[start:start + len(plain)], plain):
            return Frame(full[:start].copy(), full[start + len(plain):].copy())
    return Frame(EMPTY, EMPTY)  # pragma: no cover

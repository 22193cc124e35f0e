"""Split long documents into chunks that fit the model, at token boundaries snapped to whitespace.

``count(s)`` is the number of tokens the model sees for ``s`` (prompt and special tokens
included). A chunk is the longest run of whole words whose count stays within the budget;
a single word longer than the budget is cut inside, at the longest prefix that fits. The
next chunk starts at the word from which about ``overlap`` tokens reach the previous
chunk's end. Spans are character offsets into the document.
"""

from __future__ import annotations

import re
from typing import Callable

__all__ = ["chunk_spans"]

WORD = re.compile(r"\S+")


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The largest x in [lo, hi] with ok(x), given ok(lo); assumes ok is monotone (true, then false)."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _smallest(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The smallest x in [lo, hi] with ok(x), given ok(hi); assumes ok is monotone (false, then true)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def chunk_spans(text: str, count: Callable[[str], int], max_tokens: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Character spans (start, end) of the chunks of ``text``; one span (0, len) when it fits whole."""
    if count(text) <= max_tokens:
        return [(0, len(text))]
    base = count("")  # prompt and special tokens, paid by every chunk
    words = [[m.start(), m.end()] for m in WORD.finditer(text)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        start = words[i][0]

        def fits(j: int) -> bool:
            return count(text[start:words[j - 1][1]]) <= max_tokens

        # a word costs at least one token, so a chunk holds at most max_tokens words
        hi = min(len(words), i + max_tokens)
        if not fits(i + 1):  # one word longer than the budget: cut inside it
            w_end = words[i][1]
            end = _largest(start + 1, w_end, lambda e: e == start + 1 or count(text[start:e]) <= max_tokens)
            spans.append((start, end))
            words[i][0] = end
            continue
        j = _largest(i + 1, hi, fits)
        end = words[j - 1][1]
        spans.append((start, end))
        if j >= len(words):
            break
        if overlap <= 0:
            i = j
            continue
        k = _smallest(i + 1, j, lambda k: k == j or count(text[words[k][0]:end]) - base <= overlap)
        if k < j and count(text[words[k][0]:words[j][1]]) > max_tokens:
            k = j  # the next word would not fit beside the overlap: no chunk that only repeats the last one
        i = k
    return spans

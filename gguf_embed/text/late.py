"""Late chunking's token arithmetic: character spans of a document -> token spans of the passes
that run it, with no model in sight (``tokenize`` is a callable: normalised text -> body ids).

The document (behind its prompt) is tokenised once, as the model sees it whole. A chunk's
token span is every body token that overlaps its characters: each cut position ``p`` is
located by tokenising the text from the last clean cut up to ``p`` (trailing whitespace
dropped) and matching it against the whole-document tokens; where the two agree to the end,
the cut falls between tokens, and where they part, the token there straddles the cut and
belongs to both chunks. Cuts at whitespace (all that ``corpus.chunking`` makes, short of a
word longer than a chunk) are exact for WordPiece and SentencePiece vocabularies.

Passes ("windows"): a document whose tokens fit the model's limit is one pass, special
tokens and prompt included. A longer one is run in several passes, each cut at chunk
boundaries: a pass holds as many whole consecutive chunks as fit, the next pass starts at
the first chunk not yet held (so passes overlap exactly as much as the chunks do), and every
chunk is pooled inside the one pass that holds it. Each pass has its own frame (``[CLS]``,
the prompt, ``[SEP]``).

Special tokens follow the late-chunking paper (Günther et al. 2024, and jina-ai/late-chunking's
evaluation code): the tokens a pass puts before the text (``[CLS]``/``<s>`` and the prompt) are
pooled with its first chunk and those after it (``[SEP]``/``</s>``) with its last, so a
document that is one chunk gets exactly its ordinary mean-pooled vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .frame import common_prefix

__all__ = ["LatePlan", "plan_late", "join_chunks", "check_spans"]

Tokenize = Callable[[str], np.ndarray]


@dataclass(frozen=True)
class LatePlan:
    windows: list[np.ndarray]  # framed token sequences: one model pass each
    chunks: list[tuple[int, np.ndarray]]  # per chunk: (window, the rows of that pass it pools)


def check_spans(spans: Sequence[tuple[int, int]], n_chars: int) -> list[tuple[int, int]]:
    """Spans as (int, int) pairs inside the text, non-empty, in document order (starts and ends
    non-decreasing); ValueError naming the first that is not."""
    out: list[tuple[int, int]] = []
    for i, span in enumerate(spans):
        try:
            a, b = (int(x) for x in span)
        except (TypeError, ValueError):
            raise ValueError(f"span {i} is not a (start, end) pair") from None
        if not 0 <= a < b <= n_chars:
            raise ValueError(f"span {i} ({a}, {b}) is empty or outside the document's {n_chars} characters")
        if out and (a < out[-1][0] or b < out[-1][1]):
            raise ValueError(f"span {i} ({a}, {b}) is out of document order")
        out.append((a, b))
    if not out:
        raise ValueError("no spans")
    return out


def join_chunks(chunks: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """One document from its chunks in order, and each chunk's span in it: neighbours are joined
    with one space unless one of them already has whitespace at the seam."""
    parts, spans, pos = [], [], 0
    for c in chunks:
        if parts and not (parts[-1][-1:].isspace() or c[:1].isspace()):
            parts.append(" ")
            pos += 1
        parts.append(c)
        spans.append((pos, pos + len(c)))
        pos += len(c)
    return "".join(parts), spans


def _cut_tokens(tokenize: Tokenize, text: str, body: np.ndarray, cuts: list[int]) -> dict[int, tuple[int, bool]]:
    """For each cut (ascending character positions): (body tokens wholly before it, whether the
    cut falls between two tokens)."""
    out: dict[int, tuple[int, bool]] = {0: (0, True), len(text): (len(body), True)}
    anchor, at = 0, 0  # a clean cut at a word start: tokenising may restart there
    for p in cuts:
        if p in out:
            continue
        ids = tokenize(text[anchor:p].rstrip()) if text[anchor:p].strip() else body[:0]
        n = common_prefix(np.asarray(ids), body[at:at + len(ids)])
        clean = n == len(ids)
        out[p] = (at + n, clean)
        if clean and text[p - 1].isspace():
            anchor, at = p, at + n
    return out


def _token_spans(tokenize: Tokenize, text: str, body: np.ndarray, spans: list[tuple[int, int]]) -> list[list[int]]:
    cuts = _cut_tokens(tokenize, text, body, sorted({p for s in spans for p in s}))
    out = []
    for a, b in spans:
        start = cuts[a][0]
        end, clean = cuts[b]
        end = min(len(body), end if clean else end + 1)
        out.append([start, max(end, start + 1)])
    return out


def _windows(tok: list[list[int]], first: int, n_body: int, room: int) -> list[tuple[int, int, list[int]]]:
    """(first token, end token, chunk indices) per pass: the whole text when it fits ``room``
    tokens, else whole consecutive chunks while they fit; a chunk longer than a pass alone is
    cut to its first ``room`` tokens."""
    if n_body - first <= room:
        return [(first, n_body, list(range(len(tok))))]
    out, i = [], 0
    while i < len(tok):
        start = tok[i][0]
        j = i
        while j < len(tok) and tok[j][1] - start <= room:
            j += 1
        if j == i:
            tok[i][1] = start + room
            j = i + 1
        out.append((start, max(t[1] for t in tok[i:j]), list(range(i, j))))
        i = j
    return out


def plan_late(tokenize: Tokenize, text: str, spans: Sequence[tuple[int, int]], *, prompt: str,
              prefix: np.ndarray, suffix: np.ndarray, limit: int) -> LatePlan:
    """The passes for ``text`` (its ``prompt`` before it) and which rows of them each span pools."""
    spans = check_spans(spans, len(text))
    full = prompt + text
    body = np.asarray(tokenize(full), dtype=np.int32)
    n_prompt = _cut_tokens(tokenize, full, body, [len(prompt)])[len(prompt)][0] if prompt else 0
    tok = _token_spans(tokenize, full, body, [(a + len(prompt), b + len(prompt)) for a, b in spans])
    for t in tok:
        t[0] = max(t[0], n_prompt)  # the prompt is the frame's, not a chunk's
        t[1] = max(t[1], t[0] + 1)
    head = np.concatenate([prefix, body[:n_prompt]]).astype(np.int32)
    tail = np.asarray(suffix, dtype=np.int32)
    room = limit - len(head) - len(tail)
    if room < 1:
        raise ValueError(f"the prompt and special tokens take {len(head) + len(tail)} of the {limit} tokens")
    windows, rows = [], [None] * len(tok)
    for w, (a, b, members) in enumerate(_windows(tok, n_prompt, len(body), room)):
        seq = np.concatenate([head, body[a:b], tail])
        windows.append(seq)
        for c in members:
            parts = [np.arange(tok[c][0] - a, tok[c][1] - a) + len(head)]
            if c == members[0]:  # the frame before the text, and the prompt, pool with the pass's first chunk
                parts.insert(0, np.arange(len(head)))
            if c == members[-1]:  # ... the frame after it with its last
                parts.append(np.arange(len(seq) - len(tail), len(seq)))
            rows[c] = (w, np.concatenate(parts).astype(np.int64))
    return LatePlan(windows, rows)

"""Prefix sharing for causal models with last-token pooling: which sequences of a packed batch begin
with the same tokens, and the two llama.cpp batches that compute each shared prefix once.

A causal model's state for a token depends only on the tokens before it, so sequences that begin
with the same tokens (Qwen3-Embedding queries behind their ``Instruct: ...\\nQuery:`` prompt) have the
same keys and values there. The prefix is decoded once, in the first member's sequence (the *head*
batch); its cells are then given to the other members (``Context.share``: metadata only in a unified
cache); the *tail* batch decodes each member's remaining tokens with positions that continue the
prefix, and every sequence not in a group whole, as before. The tail's outputs are each sequence's last
token, in the order of the sequences, which is what the last-token fast path returns.

Pure numpy: nothing here calls llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_SHARED", "Shared", "common_length", "share_groups", "plan_shared", "prefix_costs"]

MIN_SHARED = 4  # shorter common prefixes are not worth a second decode


@dataclass(frozen=True)
class Shared:
    """Members (indices into the batch's sequences, the first decodes the prefix) sharing ``n`` tokens."""

    members: np.ndarray
    n: int

    @property
    def saved(self) -> int:
        return (len(self.members) - 1) * self.n


def common_length(a: np.ndarray, b: np.ndarray) -> int:
    """How many first tokens ``a`` and ``b`` have in common."""
    m = min(len(a), len(b))
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if len(diff) else m


def share_groups(seqs: list[np.ndarray], min_shared: int = MIN_SHARED) -> list[Shared]:
    """Groups of sequences with a common prefix of at least ``min_shared`` tokens, chosen to save the
    most tokens; each prefix stops at least one token before its shortest member's end (the last
    token is every sequence's own output). Sequences in no group share nothing."""
    if len(seqs) < 2:
        return []
    order = sorted(range(len(seqs)), key=lambda i: seqs[i].tolist())  # common prefixes become neighbours
    lcp = np.array([min(common_length(seqs[a], seqs[b]), len(seqs[a]) - 1, len(seqs[b]) - 1)
                    for a, b in zip(order, order[1:])], dtype=np.int64)
    # the ranges [lo, hi) of ``order`` form a tree (split where the common prefix is shortest); a range
    # is one group if that saves at least as much as the best split of its two halves
    best: dict[tuple[int, int], list[Shared]] = {}
    stack = [(0, len(order), False)]
    while stack:
        lo, hi, children_done = stack.pop()
        if hi - lo < 2:
            best[lo, hi] = []
            continue
        cut = lo + int(np.argmin(lcp[lo:hi - 1]))
        if not children_done:
            stack += [(lo, hi, True), (lo, cut + 1, False), (cut + 1, hi, False)]
            continue
        split = best.pop((lo, cut + 1)) + best.pop((cut + 1, hi))
        n = int(lcp[cut])
        whole = Shared(np.array(order[lo:hi]), n)
        keep_whole = n >= min_shared and whole.saved >= sum(g.saved for g in split)
        best[lo, hi] = [whole] if keep_whole else split
    return best[0, len(order)]


def prefix_costs(seqs: list[np.ndarray], min_shared: int = MIN_SHARED) -> tuple[np.ndarray, np.ndarray]:
    """(group id or -1, shared tokens) per sequence, for packing: a sequence whose group's prefix is
    already in a batch adds only its own tokens."""
    group = np.full(len(seqs), -1, dtype=np.int64)
    shared = np.zeros(len(seqs), dtype=np.int64)
    for g, s in enumerate(share_groups(seqs, min_shared)):
        group[s.members] = g
        shared[s.members] = s.n
    return group, shared


Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # tokens, positions, sequence ids, outputs


def plan_shared(seqs: list[np.ndarray], groups: list[Shared],
                kept: np.ndarray | None = None) -> tuple[Batch, list[tuple[int, int, int]], Batch]:
    """(head batch, copies (src, dst, n), tail batch) for sequences numbered by their index (their
    llama.cpp sequence id). The head has no outputs; the tail's outputs are each sequence's last
    token, in sequence order. ``kept``: per sequence, how many of its first tokens already have cells
    (a prefix kept from an earlier call, ``kept.KeptPrefixes``), used by a group's first member and
    by a sequence in no group; at most the group's prefix, and short of the sequence's last token."""
    start = np.zeros(len(seqs), dtype=np.int64) if kept is None else np.asarray(kept, dtype=np.int64).copy()
    head_tok, head_pos, head_seq, copies = [], [], [], []
    for g in groups:
        lead = int(g.members[0])
        have = min(int(start[lead]), g.n)
        start[g.members] = g.n
        head_tok.append(seqs[lead][have:g.n])
        head_pos.append(np.arange(have, g.n, dtype=np.int32))
        head_seq.append(np.full(g.n - have, lead, dtype=np.int32))
        copies += [(lead, int(m), g.n) for m in g.members[1:]]
    tails = [s[int(a):] for s, a in zip(seqs, start)]
    lengths = np.array([len(t) for t in tails], dtype=np.int64)
    tail_out = np.zeros(int(lengths.sum()), dtype=bool)
    tail_out[np.cumsum(lengths) - 1] = True
    tail = (np.concatenate(tails).astype(np.int32),
            np.concatenate([np.arange(a, len(s), dtype=np.int32) for s, a in zip(seqs, start)]),
            np.repeat(np.arange(len(seqs), dtype=np.int32), lengths), tail_out)
    head_tok = np.concatenate(head_tok).astype(np.int32) if head_tok else np.zeros(0, np.int32)
    head = (head_tok, np.concatenate(head_pos) if head_pos else np.zeros(0, np.int32),
            np.concatenate(head_seq) if head_seq else np.zeros(0, np.int32), np.zeros(len(head_tok), dtype=bool))
    return head, copies, tail

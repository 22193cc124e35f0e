"""Prefixes a last-token context keeps in its KV cache from one call to the next.

Within a call, ``prefix`` decodes what a batch's sequences begin with once. Across calls the same
beginning comes back: every Qwen3-Embedding query of a server behind the same instruction, every
Qwen3-Reranker request behind the same system prompt. After a call the runner hands a beginning of
what it decoded to a spare sequence id of the context (a *slot*: llama.cpp's ``seq_cp``, which in a
unified cache adds the slot to the cells, no copying) instead of freeing it; a later sequence that
begins with the same tokens takes those cells (``seq_cp`` back) and decodes only the rest, with
positions that continue them. A causal model's keys and values for a token depend only on the tokens
before it, so the cells are what decoding the prefix again would give, up to float rounding.

A few slots, least recently used first out; a kept prefix is at most ``MAX_TOKENS`` long, and the
runner drops them all when a batch needs their cells. Pure bookkeeping: nothing here calls llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .prefix import MIN_SHARED, common_length

__all__ = ["KeptPrefixes", "SLOTS", "MAX_TOKENS", "PLAN_NOTE"]

SLOTS = 2  # sequence ids set aside (the context's last ones): e.g. a query instruction and a rerank prompt
MAX_TOKENS = 256  # longer beginnings are kept cut to this: an instruction or a prompt, not a whole document
PLAN_NOTE = (f"up to {SLOTS * MAX_TOKENS} of the context's KV cells keep prompt prefixes between calls "
             "(freed whenever a batch needs them; none with --no-prefix-cache)")


@dataclass
class _Entry:
    tokens: np.ndarray
    used: int


class KeptPrefixes:
    """Which token prefix each slot's cells hold."""

    def __init__(self, slots: list[int]):
        self.slots = list(slots)
        self.entries: dict[int, _Entry] = {}
        self._tick = 0
        self._last = np.zeros(0, dtype=np.int32)  # the previous batch's first sequence, cut to MAX_TOKENS

    def candidate(self, seqs: list[np.ndarray], groups) -> tuple[int, int] | None:
        """(sequence, n): the beginning of this batch worth keeping, if any: the prefix its first group
        shares (``prefix.Shared``), else what its first sequence shares with the previous batch's (one
        query at a time behind the same instruction); a beginning seen once is not kept (documents)."""
        first, before = seqs[0], self._last
        self._last = np.asarray(first[:MAX_TOKENS])
        if groups:
            return int(groups[0].members[0]), groups[0].n
        n = min(common_length(before, first), len(first) - 1)
        return (0, n) if n >= MIN_SHARED else None

    @property
    def cells(self) -> int:
        """Cells the kept prefixes hold (an upper bound: they may share some)."""
        return sum(len(e.tokens) for e in self.entries.values())

    def clear(self) -> list[int]:
        """Forget every prefix; returns the slots whose cells the caller must free."""
        slots = list(self.entries)
        self.entries.clear()
        return slots

    def lookup(self, seq: np.ndarray) -> tuple[int, int]:
        """(slot, n): the kept prefix sharing the most first tokens with ``seq``, and how many (short of
        its last token, which is its own output); (-1, 0) when none shares at least ``MIN_SHARED``."""
        best, n = -1, 0
        for slot, e in self.entries.items():
            k = min(common_length(e.tokens, seq), len(seq) - 1)
            if k > n:
                best, n = slot, k
        if n < MIN_SHARED:
            return -1, 0
        self._tick += 1
        self.entries[best].used = self._tick
        return best, n

    def place(self, tokens: np.ndarray) -> tuple[int, int] | None:
        """Where to keep ``tokens`` (cut to ``MAX_TOKENS``): (slot, n) for the caller to fill with the
        cells of its first n tokens, after freeing the slot's; None when a kept prefix already covers it
        (it only counts as used) or it is too short to be worth a slot. A slot whose prefix shares the
        most with it is reused (a query instruction replaces itself, not the rerank prompt beside it),
        then an empty one, then the least recently used."""
        tokens = np.asarray(tokens[:MAX_TOKENS])
        if len(tokens) < MIN_SHARED:
            return None
        self._tick += 1
        overlap = {slot: common_length(e.tokens, tokens) for slot, e in self.entries.items()}
        for slot, k in overlap.items():
            if k == len(tokens) or (k == len(self.entries[slot].tokens) and k >= len(tokens) - MIN_SHARED):
                self.entries[slot].used = self._tick  # already kept (or kept all but a few tokens)
                return None
        near = max(overlap, key=overlap.get, default=-1)
        if near >= 0 and overlap[near] >= MIN_SHARED:
            slot = near
        else:
            free = [s for s in self.slots if s not in self.entries]
            slot = free[0] if free else min(self.entries, key=lambda s: self.entries[s].used)
        self.entries[slot] = _Entry(tokens.copy(), self._tick)
        return slot, len(tokens)

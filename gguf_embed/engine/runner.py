"""The batch core under Embedder and Reranker: framed token sequences in, one raw row per
sequence out.

Sequences are sorted by length and packed under a token budget and a sequence cap, run
through llama.cpp batch by batch (a sequence longer than a batch continues in the next
one, its KV cache kept), and pooled; results come back in input order.

Two ways to run a decoder with last-token pooling (Qwen3):
- the fast path: only each sequence's last token is an output and the graph stops at the
  final norm (``_llama.Context(last_only=True)``): no LM head, no logits;
- the plain path: embeddings on, every token an output (what llama.cpp itself does).
The fast path checks itself against the plain path on a probe when a model loads and
falls back if the two disagree or the capture never fires.

Batch invariance: llama.cpp's row for a sequence moves by float noise with the batch it is packed
in (sums over a packed batch's attention group its terms differently), so a sequence flagged
``alone`` runs in a batch of its own: its row is then bit-identical whatever else the call holds,
at any thread count, in any process (what int8 and binary codes need to be stable).

A pooled row with a NaN or inf is never returned: the call fails naming the input, and
the context (whose state may be what went wrong) is rebuilt with the same parameters.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Callable

import numpy as np

from ..errors import FastPathError, GGUFEmbedError, ModelRuntimeError, NonFiniteOutputError
from ..heads.pooling import cosine, needed_rows, pool
from . import kept
from . import llama as _llama
from . import prefix
from .settings import fast_path_enabled

__all__ = ["BatchRunner"]

log = logging.getLogger("gguf_embed.runner")
PROBE_TOKENS = 12  # probe length for the load-time self-check
PROBE_MIN_COS = 0.99999


class BatchRunner:
    """Owns one llama.cpp context; ``run`` is serialised (one caller at a time)."""

    def __init__(self, model: _llama.Model, params: _llama.ContextParams, *, pooling: str, causal: bool,
                 fast_path: bool | None = None, prefix_cache: bool = True, pack_tokens: int | None = None):
        self.model = model
        self.pooling = pooling
        self.batch_tokens = min(pack_tokens or params.n_batch, params.n_batch)  # tokens packed per batch
        self.max_seqs = params.n_seq_max
        self._params = params
        self._lock = threading.Lock()
        self.fast_path_note = ""
        self._plain: _llama.Context | None = None  # every-token context beside a fast-path one
        want_fast = fast_path_enabled(fast_path) and causal and pooling == "last"
        self.ctx = _llama.Context(model, params, last_only=want_fast)
        if want_fast:
            ok, why = self._self_check()
            if not ok:
                self.fast_path_note = f"last-token fast path off: {why}"
                log.warning("%s", self.fast_path_note)
                if _llama.is_verbose():
                    sys.stderr.write(f"gguf-embed: {self.fast_path_note}; using the all-token path\n")
                self.ctx.close()
                self.ctx = _llama.Context(model, params, last_only=False)
        self.prefix_cache = bool(prefix_cache)
        self.kept: kept.KeptPrefixes | None = None  # prefixes kept between calls (the context's last sequence ids)
        if self.shares_prefixes and self.max_seqs > 2 * kept.SLOTS:
            self.max_seqs -= kept.SLOTS
            self.kept = kept.KeptPrefixes(list(range(self.max_seqs, self.max_seqs + kept.SLOTS)))

    @property
    def fast_path(self) -> bool:
        return self.ctx.last_only

    @property
    def shares_prefixes(self) -> bool:
        """True when a batch's common prefixes are decoded once (see ``engine.prefix``): the last-token
        fast path (a causal model pooling its last token) with the prefix cache on."""
        return self.ctx.last_only and self.prefix_cache

    @property
    def n_ctx(self) -> int:
        return self.ctx.n_ctx

    def close(self) -> None:
        self.ctx.close()
        if self._plain is not None:
            self._plain.close()

    def rebuild(self) -> None:
        """A fresh context with the same parameters and path, in place of the current one (closed
        first: there may be no room for two)."""
        last_only = self.ctx.last_only
        self.ctx.close()
        if self._plain is not None:
            self._plain.close()
            self._plain = None
        if self.kept is not None:
            self.kept.clear()
        try:
            self.ctx = _llama.Context(self.model, self._params, last_only=last_only)
        except GGUFEmbedError as exc:
            raise ModelRuntimeError(f"could not rebuild the llama.cpp context: {exc.message}") from None

    def _check_open(self) -> None:
        if not self.ctx.ptr:
            raise ModelRuntimeError("the llama.cpp context is closed (the model was closed, or its context could "
                                    "not be rebuilt after a failure); load the model again")

    # --- load-time self-check ---------------------------------------------------------

    def _self_check(self) -> tuple[bool, str]:
        """Embed a short probe both ways on the new context; True if they agree."""
        n_vocab = self.model.n_vocab
        n = min(PROBE_TOKENS, self.max_seqs, self.batch_tokens)
        probe = self.model.tokenize("gguf-embed checks its fast path on this probe sentence.", add_special=True)
        if len(probe) < 2:  # pragma: no cover - any real vocabulary splits the sentence
            probe = np.arange(1, n + 1, dtype=np.int32) % n_vocab
        probe = probe[-n:].astype(np.int32)
        pos = np.arange(len(probe), dtype=np.int32)
        seq = np.zeros(len(probe), dtype=np.int32)
        out = np.zeros(len(probe), dtype=bool)
        out[-1] = True
        try:
            fast = self.ctx.run(probe, pos, seq, out)[0]
            self.ctx.clear()
            plain = self.ctx.run_all_rows(probe, pos, seq)[-1]
        except FastPathError as exc:
            return False, str(exc)
        finally:
            self.ctx.clear()
        cos = cosine(fast, plain)
        if not np.isfinite(cos) or cos < PROBE_MIN_COS:
            return False, f"the probe's vectors differ between the two paths (cosine {cos:.6f})"
        return True, ""

    # --- packing and running ------------------------------------------------------------

    def groups(self, lengths: np.ndarray, alone=None, shared=None) -> list[np.ndarray]:
        """Sequence indices, longest first, packed under the token budget and sequence cap; a
        sequence flagged in ``alone`` (a bool, or one per sequence) is a group of its own. ``shared``:
        (prefix group or -1, shared tokens) per sequence (``prefix.prefix_costs``): a sequence whose
        prefix is already in the batch counts only its own tokens."""
        order = np.argsort(-lengths, kind="stable")
        solo = np.broadcast_to(np.asarray(False if alone is None else alone, dtype=bool), lengths.shape)
        share_id, share_n = shared if shared is not None else (np.full(len(lengths), -1), np.zeros(len(lengths)))
        groups, cur, used, present = [np.array([i]) for i in order[solo[order]]], [], 0, set()
        for idx in order[~solo[order]]:
            g = int(share_id[idx])
            n = int(lengths[idx]) - (int(share_n[idx]) if g >= 0 and g in present else 0)
            if cur and (used + n > self.batch_tokens or len(cur) >= self.max_seqs):
                groups.append(np.array(cur))
                cur, used, present = [], 0, set()
                n = int(lengths[idx])
            cur.append(idx)
            used += n
            present.add(g)
        if cur:
            groups.append(np.array(cur))
        return groups

    def _kept_starts(self, seqs: list[np.ndarray], shared: list[prefix.Shared]) -> list[tuple[int, int, int]]:
        """(slot, sequence, n) for the sequences (a group's first member, or one in no group) that begin
        with a kept prefix, when the batch leaves room for the kept cells (else they are all dropped)."""
        kept = self.kept
        if kept is None or not kept.entries:
            return []
        if kept.cells + sum(len(s) for s in seqs) > self.ctx.n_ctx:
            self._drop_kept()
            return []
        members = {int(m) for g in shared for m in g.members[1:]}
        cap = {int(g.members[0]): g.n for g in shared}  # a group's first member: at most the group's prefix
        hits = [(slot, i, min(n, cap.get(i, n))) for i, s in enumerate(seqs) if i not in members
                for slot, n in [kept.lookup(s)]]
        return [h for h in hits if h[0] >= 0 and h[2] >= prefix.MIN_SHARED]

    def _keep(self, seqs: list[np.ndarray], shared: list[prefix.Shared]) -> None:
        """Hand the beginning of what this batch decoded that is worth keeping to a slot (``kept``)."""
        found = self.kept.candidate(seqs, shared)
        place = self.kept.place(seqs[found[0]][:found[1]]) if found else None
        if place is not None:
            slot, n = place
            self.ctx.forget(slot)
            self.ctx.share(found[0], slot, n)

    def _drop_kept(self) -> None:
        """Free the kept prefixes' cells and forget them."""
        if self.kept is not None:
            for slot in self.kept.clear():
                self.ctx.forget(slot)

    def _release(self, n_seqs: int) -> None:
        """Free the batch's cells; the kept prefixes' stay."""
        if self.kept is None or not self.kept.entries:
            self.ctx.clear()
        else:
            for seq in range(n_seqs):
                self.ctx.forget(seq)

    def _run_shared(self, seqs: list[np.ndarray], shared: list[prefix.Shared],
                    hits: list[tuple[int, int, int]] = ()) -> np.ndarray:
        """Last-token rows of one packed group whose common prefixes are decoded once (fast path), and
        whose kept prefixes (``hits``: slot, sequence, n) are not decoded at all."""
        starts = np.zeros(len(seqs), dtype=np.int64)
        for _, i, n in hits:
            starts[i] = n
        head, copies, tail = prefix.plan_shared(seqs, shared, starts)
        ctx, step, rows = self.ctx, self.ctx.n_batch, []
        try:
            for slot, i, n in hits:
                ctx.share(slot, i, n)
            for a in range(0, len(head[0]), step):
                ctx.run(*(part[a:a + step] for part in head))
            for src, dst, n in copies:
                ctx.share(src, dst, n)
            for a in range(0, len(tail[0]), step):
                rows.append(ctx.run(*(part[a:a + step] for part in tail)))
            if self.kept is not None:
                self._keep(seqs, shared)
        except BaseException:  # a failed decode: start again from an empty cache
            self._drop_kept()
            ctx.clear()
            raise
        self._release(len(seqs))
        return np.concatenate(rows)

    def _run_group(self, seqs: list[np.ndarray], every_token: bool = False, share: bool = True) -> np.ndarray:
        """Pooled rows of one packed group; with ``every_token``, every token's row instead. ``share``
        false (batch-invariant rows): nothing decoded elsewhere is used."""
        if not share:
            self._drop_kept()  # kept cells in the cache change how attention sums up
        if not every_token and self.shares_prefixes:
            shared = prefix.share_groups(seqs) if share else []
            hits = self._kept_starts(seqs, shared) if share else []
            if shared or hits or (share and self.kept is not None):
                return self._run_shared(seqs, shared, hits)
        lengths, tokens, pos, seq = _pack(seqs)
        wanted = None if every_token else needed_rows(lengths, self.pooling)
        ctx = self._token_context() if every_token else self.ctx
        step = ctx.n_batch
        rows = []
        fast = ctx.last_only
        if fast:
            out = np.zeros(len(tokens), dtype=bool)
            out[wanted] = True
        try:
            for a in range(0, len(tokens), step):
                b = min(a + step, len(tokens))
                if fast:
                    rows.append(ctx.run(tokens[a:b], pos[a:b], seq[a:b], out[a:b]))
                    continue
                view = ctx.run(tokens[a:b], pos[a:b], seq[a:b])
                if wanted is None:
                    rows.append(view.copy())
                else:
                    sel = wanted[(wanted >= a) & (wanted < b)] - a
                    if len(sel):
                        rows.append(view[sel])
        finally:
            ctx.clear()  # no kept prefixes here: a sharing call went through _run_shared, others dropped them
        hidden = np.concatenate(rows)
        return hidden if every_token else pool(hidden, lengths, self.pooling)

    def _token_context(self) -> _llama.Context:
        """The context that returns every token's row: the main one, or (for a last-token
        fast-path context, which outputs only last tokens) a plain one made on first use."""
        if not self.ctx.last_only:
            return self.ctx
        if self._plain is None or not self._plain.ptr:
            self._plain = _llama.Context(self.model, self._params, last_only=False)
        return self._plain

    def _each_group(self, seqs: list[np.ndarray], progress: Callable[[int], None] | None,
                    every_token: bool = False, alone=None):
        """(group, its rows) per packed group, serialised: pooled rows (len(group), n_embd), or with
        ``every_token`` one (len_i, n_embd) array per sequence. A group with a non-finite row fails,
        naming its first such input, after the context is rebuilt."""
        if not seqs:
            return
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        with self._lock:
            self._check_open()
            shared = prefix.prefix_costs(seqs) if not every_token and self.shares_prefixes else None
            share = alone is None or not np.any(alone)
            for group in self.groups(lengths, alone, shared):
                rows = self._run_group([seqs[i] for i in group], every_token, share)
                if every_token:
                    rows = np.split(rows, np.cumsum(lengths[group])[:-1])
                    finite = np.array([np.isfinite(r).all() for r in rows])
                else:
                    finite = np.isfinite(rows).all(axis=1)
                if not finite.all():
                    log.warning("non-finite rows for inputs %s; rebuilding the llama.cpp context",
                                sorted(int(i) for i in group[~finite]))
                    self.rebuild()
                    raise NonFiniteOutputError.for_input(int(group[~finite].min()))
                yield group, rows
                if progress is not None:
                    progress(len(group))

    def run(self, seqs: list[np.ndarray], n_embd: int, progress: Callable[[int], None] | None = None,
            alone=None) -> np.ndarray:
        """Pooled, unnormalised rows (n, n_embd) for framed token sequences, in input order; ``alone``
        (a bool, or one per sequence): run those sequences each in a batch of its own."""
        result = np.empty((len(seqs), n_embd), dtype=np.float32)
        for group, rows in self._each_group(seqs, progress, alone=alone):
            result[group] = rows
        return result

    def run_tokens(self, seqs: list[np.ndarray], progress: Callable[[int], None] | None = None,
                   alone=None) -> list[np.ndarray]:
        """Every token's hidden state (len_i, n_embd), unpooled and unnormalised, per framed
        sequence, in input order: the raw material of token-level, sparse, multi-vector and
        late-chunked outputs."""
        result: list[np.ndarray] = [np.empty((0, 0), np.float32)] * len(seqs)
        for group, parts in self._each_group(seqs, progress, every_token=True, alone=alone):
            for idx, part in zip(group, parts):
                result[idx] = part.astype(np.float32, copy=True)
        return result

    def observe(self, seqs: list[np.ndarray], observer, progress: Callable[[int], None] | None = None) -> None:
        """Run framed sequences, packed as ``run`` packs them, through a plain context (every token an
        output) whose eval callback is ``observer.callback`` (see ``ggml.ImportanceCapture``); the
        rows are not kept."""
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        with self._lock:
            self._check_open()
            ctx = _llama.Context(self.model, self._params, callback=observer)
            try:
                for group in self.groups(lengths):
                    _, tokens, pos, seq = _pack([seqs[i] for i in group])
                    for a in range(0, len(tokens), ctx.n_batch):
                        b = min(a + ctx.n_batch, len(tokens))
                        ctx.run(tokens[a:b], pos[a:b], seq[a:b])
                    ctx.clear()
                    if progress is not None:
                        progress(len(group))
            finally:
                ctx.close()


def _pack(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One llama.cpp batch's (lengths, tokens, positions, sequence ids) for a packed group."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    pos = np.concatenate([np.arange(n, dtype=np.int32) for n in lengths])
    return lengths, np.concatenate(seqs), pos, np.repeat(np.arange(len(seqs), dtype=np.int32), lengths)

"""A corpus job with outputs beyond the dense vector (``encode --emit dense,sparse,colbert,tokens``).

Records are read, chunked and windowed as for an ordinary job (``windows.windows``), and each
window's distinct texts run through the model once with every token's state
(``Embedder.outputs_for``): dense, sparse, ColBERT and token vectors all come from that one pass.

The vector cache is not used: it stores one fixed-size vector per text, and these outputs vary in
size with the text. Such a job therefore embeds every text (a text repeated within a window once),
and a killed one starts again from the beginning; the manifest says so.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

import numpy as np

from ..embedder import Embedder, EmbedResult
from ..errors import BadInputError
from .backends import finite_run, tokenize_checked
from .records import BadRecord, Record
from .spec import NON_FINITE, JobSpec, JobStats
from .windows import Window, windows
from .writers import Rows

__all__ = ["stream_outputs", "CACHE_NOTE"]

CACHE_NOTE = ("not used: the cache holds one dense vector per text, so a job with sparse, colbert or tokens "
              "outputs computes every output afresh (and a killed run starts again)")


def _embed(emb: Embedder, spec: JobSpec, seqs: list, bad: dict[int, str],
           skip_bad: bool) -> tuple[np.ndarray, EmbedResult | None]:
    """(positions, outputs) of the sequences that can be embedded; a non-finite one joins ``bad``, and
    with ``skip_bad`` the rest run again (without it, nothing is returned)."""
    def run(part):
        return emb.outputs_for(part, spec.outputs, spec.dimensions, spec.normalize, batch_invariant=spec.batch_invariant)

    return finite_run(run, seqs, bad, retry=skip_bad, empty=None, what="outputs")


def _pick(values: list | None, at: list[int]) -> list | None:
    return None if values is None else [values[i] for i in at]


def _window_rows(emb: Embedder, spec: JobSpec, win: Window, skip_bad: bool, keep_text: bool,
                 stats: JobStats, bad: list[BadRecord]) -> tuple[Rows, int]:
    index: dict[str, int] = {}
    for t in win.texts:
        index.setdefault(t, len(index))
    distinct = list(index)
    seqs, why = tokenize_checked(emb, distinct, spec)
    ok, res = _embed(emb, spec, seqs, why, skip_bad)
    if why and not skip_bad:  # the first record in input order that cannot be embedded, by file and line
        i = next(i for i, t in enumerate(win.texts) if index[t] in why)
        raise BadInputError(f"{win.records[win.rec[i]].where}: {why[index[win.texts[i]]]}")
    row_of = {int(p): r for r, p in enumerate(ok)}
    keep = []
    for i, t in enumerate(win.texts):
        u = index[t]
        if u in row_of:
            keep.append(i)
            continue
        record = win.records[win.rec[i]]
        bad.append(BadRecord(record.where, record.id, why.get(u, NON_FINITE)))
    at = [row_of[index[win.texts[i]]] for i in keep]
    tokens = res.token_counts[at] if len(at) else np.zeros(0, np.int64)
    stats.count += len(keep)
    stats.embedded += len(ok)
    stats.duplicates += len(keep) - len({index[win.texts[i]] for i in keep})
    stats.tokens += int(res.token_counts.sum())
    chunked = spec.chunk_tokens is not None
    pick = (lambda xs, dt: np.array([xs[i] for i in keep], dtype=dt)) if chunked else (lambda xs, dt: None)
    rows = Rows([win.records[win.rec[i]].id for i in keep], None if res.embeddings is None else res.embeddings[at],
                tokens, pick(win.chunk, np.int32), pick(win.start, np.int64), pick(win.end, np.int64),
                [win.texts[i] for i in keep] if keep_text else None,
                sparse=_pick(res.sparse, at), colbert=_pick(res.colbert, at), token_vectors=_pick(res.token_vectors, at))
    return rows, int(res.token_counts.sum())


def stream_outputs(records: Iterable[Record], emb: Embedder, spec: JobSpec, *, skip_bad: bool = False,
                   keep_text: bool = False, progress: Callable[[int, int, int], None] | None = None,
                   stats: JobStats | None = None, bad: list[BadRecord] | None = None) -> Iterator[Rows]:
    """The output rows with every output ``spec.outputs`` names, a window at a time, in input order."""
    stats = JobStats() if stats is None else stats
    bad = [] if bad is None else bad
    emb.check_outputs(spec.outputs)
    t0 = time.perf_counter()
    try:
        for win in windows(records, spec, emb, stats):
            rows, n_tokens = _window_rows(emb, spec, win, skip_bad, keep_text, stats, bad)
            if progress is not None:
                progress(len(rows), n_tokens, 0)
            stats.seconds = time.perf_counter() - t0
            yield rows
    finally:
        stats.skipped = len(bad)
        stats.seconds = time.perf_counter() - t0

"""A corpus job as a stream: records -> chunks -> cache lookup -> embed -> rows, a window at a time.

Memory is bounded by the window (``JobSpec.window`` rows), never by the corpus. Each window's
distinct texts are looked up in the store; those it lacks are embedded in batches sized to take
about ``backends.COMMIT_SECONDS`` each, and every batch is committed to the store as it comes back
(``store.lookup.embed_missing``), so a killed run loses at most that much work. A text seen earlier
in the corpus is not embedded again: its vector is read back from the store, which is the index of
what is done (the shared cache, or with ``--no-cache`` the private progress file). Which texts this
run has already seen (for the exact ``duplicates`` and ``reused`` counts) is a set of digests in a
temporary SQLite file. ``run_job`` gathers a whole job's rows at once.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..embedder import Embedder
from ..errors import BadInputError
from ..store.cache import Space, VectorCache, text_key
from ..store.lookup import Backend, Found, distinct, embed_missing
from .backends import timed_backend
from .late_chunks import late_backend
from .records import BadRecord, Record
from .seen import SeenSet
from .spec import JobSpec, JobStats, job_params
from .windows import Window, windows
from .writers import Rows, concat_rows

__all__ = ["stream_job", "run_job", "temporary_store"]


@contextmanager
def temporary_store() -> Iterator[VectorCache]:
    """A private store for a run that keeps no cache: the index of the texts done, deleted after."""
    with tempfile.TemporaryDirectory(prefix="gguf-embed-job-") as d:
        store = VectorCache(Path(d) / "progress.sqlite")
        try:
            yield store
        finally:
            store.close()


@dataclass
class _Run:
    emb: Embedder
    spec: JobSpec
    store: VectorCache
    space: Space
    backend: Backend
    seen: SeenSet
    stats: JobStats
    reuse: bool
    skip_bad: bool
    keep_text: bool
    progress: Callable[[int, int, int], None] | None
    dropped: dict[bytes, str] = field(default_factory=dict)  # texts that cannot be embedded -> why


def _lookup(run: _Run, keys: list[bytes]) -> tuple[Found, set[bytes]]:
    """Vectors for the window's distinct texts: every one met earlier in this run, and (unless
    restarting) any the store has from before; counts the reused ones. Also: the earlier ones."""
    earlier = run.seen.add(keys)
    ask = keys if run.reuse else [k for k in keys if k in earlier]
    found = run.store.get_many(run.space, ask) if ask else {}
    run.stats.reused += sum(1 for k in found if k not in earlier)
    return found, earlier


def _embed_missing(run: _Run, win: Window, keys: list[bytes], missing: list[bytes], weight: Counter,
                   found: Found) -> None:
    first = distinct(keys)[1]
    items = win.units if run.spec.late_chunking else win.texts
    for ks, batch in embed_missing(run.store, run.space, missing, [items[first[k]] for k in missing], run.backend,
                                   found):
        run.stats.embedded += len(ks)
        run.stats.tokens += int(batch.tokens.sum())
        for pos, why in batch.bad.items():
            run.dropped[missing[pos]] = why
            if not run.skip_bad:
                raise BadInputError(f"{win.records[win.rec[first[missing[pos]]]].where}: {why}")
        if run.progress is not None:
            run.progress(sum(weight[k] for k in ks), int(batch.tokens.sum()), 0)


def _window_rows(run: _Run, win: Window, bad: list[BadRecord]) -> Rows:
    keys = win.keys if run.spec.late_chunking else [text_key(t) for t in win.texts]
    weight = Counter(keys)
    found, earlier = _lookup(run, list(weight))
    missing = [k for k in weight if k not in found and k not in run.dropped]
    if run.progress is not None and found:
        cached = sum(weight[k] for k in found)
        run.progress(cached, 0, cached)
    _embed_missing(run, win, keys, missing, weight, found)
    keep = [i for i, k in enumerate(keys) if k not in run.dropped]
    for i in (i for i, k in enumerate(keys) if k in run.dropped):
        record = win.records[win.rec[i]]
        bad.append(BadRecord(record.where, record.id, run.dropped[keys[i]]))
    run.stats.count += len(keep)
    run.stats.duplicates += len(keep) - len({keys[i] for i in keep} - earlier)  # rows after a text's first
    dims = run.spec.dimensions or run.emb.dimensions
    vectors = np.array([found[keys[i]][0] for i in keep], dtype=np.float32).reshape(len(keep), dims)
    chunked = run.spec.chunk_tokens is not None
    pick = (lambda xs, dt: np.array([xs[i] for i in keep], dtype=dt)) if chunked else (lambda xs, dt: None)
    return Rows([win.records[win.rec[i]].id for i in keep], vectors,
                np.array([found[keys[i]][1] for i in keep], dtype=np.int64), pick(win.chunk, np.int32),
                pick(win.start, np.int64), pick(win.end, np.int64),
                [win.texts[i] for i in keep] if run.keep_text else None)


def stream_job(records: Iterable[Record], emb: Embedder, spec: JobSpec, store: VectorCache, *,
               backend: Backend | None = None, model_sha256: str | None = None, reuse: bool = True,
               skip_bad: bool = False, keep_text: bool = False,
               progress: Callable[[int, int, int], None] | None = None,
               stats: JobStats | None = None, bad: list[BadRecord] | None = None) -> Iterator[Rows]:
    """The output rows, a window at a time, in input order; ``stats`` and ``bad`` fill as they go."""
    stats = JobStats() if stats is None else stats
    bad = [] if bad is None else bad
    t0 = time.perf_counter()
    emb.check_dimensions(spec.dimensions)
    space = store.space(emb.name, job_params(emb, spec, model_sha256 or store.file_sha256(emb.info.path)))
    if backend is None:
        make = late_backend if spec.late_chunking else timed_backend
        backend = make(emb, spec, retry_bad=skip_bad)
    run = _Run(emb, spec, store, space, backend, SeenSet(), stats, reuse, skip_bad, keep_text, progress)
    try:
        for win in windows(records, spec, emb, stats):
            yield _window_rows(run, win, bad)
            stats.seconds = time.perf_counter() - t0
    finally:
        run.seen.close()
        stats.skipped = len(bad)
        stats.seconds = time.perf_counter() - t0


def run_job(records: Sequence[Record], emb: Embedder, spec: JobSpec, *, backend: Backend | None = None,
            store: VectorCache | None = None, model_sha256: str | None = None, reuse: bool = True,
            skip_bad: bool = False, progress: Callable[[int, int, int], None] | None = None,
            keep_text: bool = False) -> tuple[Rows, JobStats, list[BadRecord]]:
    """Embed ``records`` and return every row at once (``stream_job`` gives them a window at a time);
    ``progress(rows_done, tokens, rows_from_cache)`` after each step."""
    stats, bad = JobStats(), []
    with (nullcontext(store) if store is not None else temporary_store()) as st:
        parts = list(stream_job(records, emb, spec, st, backend=backend, model_sha256=model_sha256, reuse=reuse,
                                skip_bad=skip_bad, keep_text=keep_text, progress=progress, stats=stats, bad=bad))
    return concat_rows(parts, spec.dimensions or emb.dimensions), stats, bad

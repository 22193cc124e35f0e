"""A corpus job as a stream: records -> chunks -> cache lookup -> embed -> rows, a window at a time.

Memory is bounded by the window (``JobSpec.window`` rows), never by the corpus. Each window's
distinct texts are looked up in the store; those it lacks are embedded in batches sized to take
about ``COMMIT_SECONDS`` each, and every batch is committed to the store as it comes back, so a
killed run loses at most that much work. A text seen earlier in the corpus is not embedded again:
its vector is read back from the store, which is the index of what is done (the shared cache, or
with ``--no-cache`` the private progress file). Which texts this run has already seen (for the
exact ``duplicates`` and ``reused`` counts) is a set of digests in a temporary SQLite file.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..embedder import Embedder
from .cache import Space, VectorCache, text_key
from .chunking import chunk_spans
from .late import LateUnit, late_backend, span_key
from .job import Backend, Batch, JobSpec, JobStats, _token_counter, embed_batch, job_params
from .readers import BadInputError, BadRecord, Record
from .seen import SeenSet
from .writers import Rows

__all__ = ["COMMIT_SECONDS", "stream_job", "timed_backend", "SeenSet", "temporary_store"]

COMMIT_SECONDS = 10.0  # finished work is committed at least this often
FIRST_BATCH = 32  # texts in the first batch of a job, before its speed is known: committed within seconds even on a slow machine


@contextmanager
def temporary_store() -> Iterator[VectorCache]:
    """A private store for a run that keeps no cache: the index of the texts done, deleted after."""
    with tempfile.TemporaryDirectory(prefix="gguf-embed-job-") as d:
        store = VectorCache(Path(d) / "progress.sqlite")
        try:
            yield store
        finally:
            store.close()


def timed_backend(emb: Embedder, spec: JobSpec, *, retry_bad: bool = True,
                  seconds: float = COMMIT_SECONDS) -> Backend:
    """Embed in this process in batches sized (from the speed so far) to take about ``seconds``
    each, at most ``spec.window`` texts; each batch is yielded, and committed, as it is done."""
    state = {"rate": None}

    def encode(texts: Sequence[str]) -> Iterator[Batch]:
        a = 0
        while a < len(texts):
            rate = state["rate"]
            size = FIRST_BATCH if rate is None else int(rate * seconds * 0.8)
            size = max(1, min(spec.window, size, len(texts) - a))
            t0 = time.perf_counter()
            batch = embed_batch(emb, spec, texts[a:a + size], a, retry=retry_bad)
            state["rate"] = size / max(time.perf_counter() - t0, 1e-6)
            yield batch
            a += size

    return encode


@dataclass
class _Window:
    records: list[Record] = field(default_factory=list)
    rec: list[int] = field(default_factory=list)  # index into records, per row
    chunk: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    units: list[LateUnit] = field(default_factory=list)  # late chunking: what each row pools
    keys: list[bytes] = field(default_factory=list)  # late chunking: each row's cache key


def _windows(records: Iterable[Record], spec: JobSpec, emb: Embedder, stats: JobStats) -> Iterator[_Window]:
    count = _token_counter(emb, spec) if spec.chunk_tokens else None
    win = _Window()
    for record in records:
        stats.documents += 1
        spans = chunk_spans(record.text, count, spec.chunk_tokens, spec.chunk_overlap) if count else [(0, None)]
        win.records.append(record)
        if spec.late_chunking:
            spans = tuple((a, len(record.text) if b is None else b) for a, b in spans)
            win.units += [LateUnit(record.text, spans, c) for c in range(len(spans))]
            win.keys += [span_key(record.text, a, b) for a, b in spans]
        for c, (a, b) in enumerate(spans):
            win.rec.append(len(win.records) - 1)
            win.chunk.append(c)
            win.start.append(a)
            win.end.append(len(record.text) if b is None else b)
            win.texts.append(record.text if b is None else record.text[a:b])
        if len(win.texts) >= spec.window:
            yield win
            win = _Window()
    if win.texts:
        yield win


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


def _lookup(run: _Run, distinct: list[bytes]) -> tuple[dict[bytes, tuple[np.ndarray, int]], set[bytes]]:
    """Vectors for the window's distinct texts: every one met earlier in this run, and (unless
    restarting) any the store has from before; counts the reused ones. Also: the earlier ones."""
    earlier = run.seen.add(distinct)
    ask = distinct if run.reuse else [k for k in distinct if k in earlier]
    found = run.store.get_many(run.space, ask) if ask else {}
    run.stats.reused += sum(1 for k in found if k not in earlier)
    return found, earlier


def _embed_missing(run: _Run, win: _Window, keys: list[bytes], missing: list[bytes], weight: Counter,
                   found: dict) -> None:
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    items = win.units if run.spec.late_chunking else win.texts
    for batch in run.backend([items[first[k]] for k in missing]):
        ks = [missing[p] for p in batch.positions]
        if ks:
            run.store.put_many(run.space, ks, batch.vectors, batch.tokens)
        for k, v, n in zip(ks, batch.vectors, batch.tokens):
            found[k] = (v, int(n))
        run.stats.embedded += len(ks)
        run.stats.tokens += int(batch.tokens.sum())
        for pos, why in batch.bad.items():
            run.dropped[missing[pos]] = why
            if not run.skip_bad:
                raise BadInputError(f"{win.records[win.rec[first[missing[pos]]]].where}: {why}")
        if run.progress is not None:
            run.progress(sum(weight[k] for k in ks), int(batch.tokens.sum()), 0)


def _window_rows(run: _Run, win: _Window, bad: list[BadRecord]) -> Rows:
    keys = win.keys if run.spec.late_chunking else [text_key(t) for t in win.texts]
    weight = Counter(keys)
    distinct = list(weight)
    found, earlier = _lookup(run, distinct)
    missing = [k for k in distinct if k not in found and k not in run.dropped]
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
        for win in _windows(records, spec, emb, stats):
            yield _window_rows(run, win, bad)
            stats.seconds = time.perf_counter() - t0
    finally:
        run.seen.close()
        stats.skipped = len(bad)
        stats.seconds = time.perf_counter() - t0

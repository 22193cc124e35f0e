"""A corpus job: records in, rows of vectors out, through the cache, one committed batch at a time.

The pieces of a job (spec, stats, batches, backends, tokenising with the limit checked); the
job itself streams, window by window, in ``stream.py``. ``run_job`` gathers all its rows at once.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from ..embedder import Embedder
from ..errors import InputTooLongError, ModelRuntimeError, NonFiniteOutputError
from ..heads.pooling import postprocess
from .cache import VectorCache, space_params
from .chunking import chunk_spans
from .readers import BadRecord, Record
from .writers import Rows, concat_rows

__all__ = ["JobSpec", "JobStats", "Batch", "UnitPlan", "plan_units", "run_job", "local_backend", "tokenize_checked",
           "job_params", "finite_run", "embed_batch", "DEFAULT_WINDOW"]

DEFAULT_WINDOW = 1024
NON_FINITE = "the model gave a vector with NaN or inf values (not cached; the llama.cpp context was rebuilt)"
MAX_NON_FINITE = 8  # per window: more, and the backend itself is broken


@dataclass(frozen=True)
class JobSpec:
    input_type: str | None = None
    instruction: str | None = None
    dimensions: int | None = None
    normalize: bool = True
    truncate: str = "error"
    chunk_tokens: int | None = None
    chunk_overlap: int = 0
    window: int = DEFAULT_WINDOW
    late_chunking: bool = False  # each chunk pooled from one pass over its whole document (corpus/late.py)
    outputs: tuple[str, ...] = ("dense",)  # choices.OUTPUTS: anything beyond "dense" is computed per token
    batch_invariant: bool = False  # each text in a llama.cpp batch of its own: bit-identical in any batch

    @property
    def dense_only(self) -> bool:
        return tuple(self.outputs) == ("dense",)

    def embed_kwargs(self) -> dict:
        return {"input_type": self.input_type, "instruction": self.instruction, "truncate": self.truncate}


@dataclass
class JobStats:
    documents: int = 0
    count: int = 0  # output rows
    embedded: int = 0  # distinct texts run through the model in this invocation
    reused: int = 0  # distinct texts taken from the cache or an earlier interrupted run
    duplicates: int = 0  # rows whose text appeared earlier in this corpus (embedded once)
    skipped: int = 0  # records set aside with skip_bad
    tokens: int = 0  # tokens run through the model in this invocation
    seconds: float = 0.0


@dataclass
class Batch:
    positions: np.ndarray  # indices into the texts handed to the encoder
    vectors: np.ndarray  # float32 (len(positions), d), post-processed
    tokens: np.ndarray  # int64 (len(positions),)
    bad: dict[int, str] = field(default_factory=dict)  # position -> why it cannot be embedded


#: texts in, embedded batches out (in this process, or on Ray actors)
Backend = Callable[[Sequence[str]], Iterator[Batch]]


@dataclass
class UnitPlan:
    """Output rows and the distinct texts behind them."""

    record: np.ndarray  # (rows,) index of each row's record
    chunk: np.ndarray | None  # (rows,) chunk number, when chunking
    start: np.ndarray | None
    end: np.ndarray | None
    unique: np.ndarray  # (rows,) index into texts
    texts: list[str]


def job_params(emb: Embedder, spec: JobSpec, model_sha256: str) -> dict:
    emb.check_dimensions(spec.dimensions)
    params = space_params(
        model_sha256, prompt=emb.prompt_for(spec.input_type, spec.instruction), input_type=spec.input_type,
        instruction=spec.instruction, pooling=emb.info.pooling, dimensions=spec.dimensions or emb.dimensions,
        normalize=spec.normalize, truncate=spec.truncate, max_tokens=emb.max_tokens)
    if spec.batch_invariant:  # bit-identical rows; packed ones move by float noise with their batch
        params.update(batch_invariant=True)
    if spec.late_chunking:  # a late chunk's vector depends on how its whole document was chunked
        params.update(late_chunking=True, chunk_tokens=spec.chunk_tokens, chunk_overlap=spec.chunk_overlap)
    return params


def _token_counter(emb: Embedder, spec: JobSpec) -> Callable[[str], int]:
    def count(s: str) -> int:
        try:
            return len(emb.tokenize([s], input_type=spec.input_type, instruction=spec.instruction)[0])
        except InputTooLongError as exc:
            return exc.n_tokens

    return count


def plan_units(records: Sequence[Record], spec: JobSpec, emb: Embedder | None = None) -> UnitPlan:
    """One row per record, or one per chunk with ``spec.chunk_tokens``; identical texts share one entry."""
    rec, chunk, start, end, texts_of_rows = [], [], [], [], []
    count = _token_counter(emb, spec) if spec.chunk_tokens else None
    for r, record in enumerate(records):
        spans = chunk_spans(record.text, count, spec.chunk_tokens, spec.chunk_overlap) if count else [(0, None)]
        for c, (a, b) in enumerate(spans):
            rec.append(r)
            chunk.append(c)
            start.append(a)
            end.append(len(record.text) if b is None else b)
            texts_of_rows.append(record.text if b is None else record.text[a:b])
    index: dict[str, int] = {}
    unique = np.fromiter((index.setdefault(t, len(index)) for t in texts_of_rows), dtype=np.int64,
                         count=len(texts_of_rows))
    chunked = spec.chunk_tokens is not None
    arr = (lambda xs, dt: np.array(xs, dtype=dt)) if chunked else (lambda xs, dt: None)
    return UnitPlan(np.array(rec, dtype=np.int64), arr(chunk, np.int32), arr(start, np.int64), arr(end, np.int64),
                unique, list(index))


def tokenize_checked(emb: Embedder, texts: Sequence[str], spec: JobSpec) -> tuple[list, dict[int, str]]:
    """Token ids per text (None for a text that cannot be embedded) and why those cannot."""
    kw = spec.embed_kwargs()
    try:
        return emb.tokenize(texts, **kw), {}
    except InputTooLongError:
        pass
    seqs, bad = [], {}
    for i, t in enumerate(texts):
        try:
            seqs.append(emb.tokenize([t], **kw)[0])
        except InputTooLongError as exc:
            seqs.append(None)
            bad[i] = (f"{exc.counted}, more than the model's limit of {exc.limit} "
                      "(use --truncate end|start or --chunk-tokens)")
    return seqs, bad


def finite_run(run: Callable[[list], object], seqs: list, bad: dict[int, str], *, retry: bool, empty,
               what: str = "vectors"):
    """(positions, ``run(their sequences)``) for the sequences that are not None and not in ``bad``. One
    whose output is not finite joins ``bad``; with ``retry`` the rest run again, without it the answer
    is (no positions, ``empty``)."""
    for _ in range(MAX_NON_FINITE + 1):
        ok = np.array([i for i, s in enumerate(seqs) if s is not None and i not in bad], dtype=np.int64)
        try:
            return ok, run([seqs[i] for i in ok])
        except NonFiniteOutputError as exc:
            bad[int(ok[exc.index])] = NON_FINITE
            if not retry:
                return np.zeros(0, np.int64), empty
    raise ModelRuntimeError(f"more than {MAX_NON_FINITE} texts of {len(seqs)} gave {what} that are not finite "
                            "(NaN or inf); the backend is broken: try the CPU (--n-gpu-layers 0) or another --kv-type")


def finite_rows(emb: Embedder, seqs: list, bad: dict[int, str], *, retry: bool,
                alone: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(positions, raw rows) for the sequences that are not None (``finite_run``); ``alone``: batch-invariant."""
    return finite_run(lambda part: emb.session.rows(part, alone=alone), seqs, bad, retry=retry,
                      empty=np.zeros((0, emb.dimensions), np.float32))


def embed_batch(emb: Embedder, spec: JobSpec, texts: Sequence[str], offset: int, *, retry: bool) -> Batch:
    """``texts`` (positions from ``offset``) tokenised with the limit checked and embedded in this
    process, as ``spec`` says; one that cannot be embedded is in ``Batch.bad``."""
    seqs, bad = tokenize_checked(emb, texts, spec)
    ok, raw = finite_rows(emb, seqs, bad, retry=retry, alone=spec.batch_invariant)
    return Batch(offset + ok, postprocess(raw, spec.dimensions, spec.normalize),
                 np.array([len(seqs[i]) for i in ok], dtype=np.int64), {offset + i: m for i, m in bad.items()})


def local_backend(emb: Embedder, spec: JobSpec, *, retry_bad: bool = True) -> Backend:
    """Embed in windows of ``spec.window`` texts with the Embedder in this process; ``retry_bad``:
    a text whose vector is not finite is set aside and the rest of its window embedded again."""

    def encode(texts: Sequence[str]) -> Iterator[Batch]:
        for a in range(0, len(texts), spec.window):
            yield embed_batch(emb, spec, texts[a:a + spec.window], a, retry=retry_bad)

    return encode


def run_job(records: Sequence[Record], emb: Embedder, spec: JobSpec, *, backend: Backend | None = None,
            store: VectorCache | None = None, model_sha256: str | None = None, reuse: bool = True,
            skip_bad: bool = False, progress: Callable[[int, int, int], None] | None = None,
            plan: UnitPlan | None = None, keep_text: bool = False) -> tuple[Rows, JobStats, list[BadRecord]]:
    """Embed ``records`` and return every row at once (``stream.stream_job`` gives them a window at a
    time); ``progress(rows_done, tokens, rows_from_cache)`` after each step. ``plan`` is not needed."""
    from .stream import stream_job, temporary_store

    stats, bad = JobStats(), []
    with (nullcontext(store) if store is not None else temporary_store()) as st:
        parts = list(stream_job(records, emb, spec, st, backend=backend, model_sha256=model_sha256, reuse=reuse,
                                skip_bad=skip_bad, keep_text=keep_text, progress=progress, stats=stats, bad=bad))
    return concat_rows(parts, spec.dimensions or emb.dimensions), stats, bad

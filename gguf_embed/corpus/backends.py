"""Embedding a batch of a corpus job in this process: tokenised with the limit checked, non-finite
vectors set aside, batches sized from the speed so far so that finished work is committed often."""

from __future__ import annotations

import time
from typing import Callable, Iterator, Sequence

import numpy as np

from ..embedder import Embedder
from ..errors import InputTooLongError, ModelRuntimeError, NonFiniteOutputError
from ..heads.pooling import postprocess
from ..store.lookup import Backend, Batch
from .spec import MAX_NON_FINITE, NON_FINITE, JobSpec

__all__ = ["COMMIT_SECONDS", "FIRST_BATCH", "token_counter", "tokenize_checked", "finite_run", "finite_rows",
           "embed_texts", "timed_backend"]

COMMIT_SECONDS = 10.0  # finished work is committed at least this often
FIRST_BATCH = 32  # texts in the first batch of a job, before its speed is known: committed within seconds even on a slow machine


def token_counter(emb: Embedder, spec: JobSpec) -> Callable[[str], int]:
    def count(s: str) -> int:
        try:
            return len(emb.tokenize([s], input_type=spec.input_type, instruction=spec.instruction)[0])
        except InputTooLongError as exc:
            return exc.n_tokens

    return count


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
                      "(use `truncate` end|start or `chunk_tokens`)")
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
                            "(NaN or inf); the backend is broken: try the CPU (`n_gpu_layers` 0) or another `kv_type`")


def finite_rows(emb: Embedder, seqs: list, bad: dict[int, str], *, retry: bool,
                alone: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(positions, raw rows) for the sequences that are not None (``finite_run``); ``alone``: batch-invariant."""
    return finite_run(lambda part: emb.session.rows(part, alone=alone), seqs, bad, retry=retry,
                      empty=np.zeros((0, emb.dimensions), np.float32))


def embed_texts(emb: Embedder, spec: JobSpec, texts: Sequence[str], offset: int, *, retry: bool) -> Batch:
    """``texts`` (positions from ``offset``) tokenised with the limit checked and embedded in this
    process, as ``spec`` says; one that cannot be embedded is in ``Batch.bad``."""
    seqs, bad = tokenize_checked(emb, texts, spec)
    ok, raw = finite_rows(emb, seqs, bad, retry=retry, alone=spec.batch_invariant)
    return Batch(offset + ok, postprocess(raw, spec.dimensions, spec.normalize),
                 np.array([len(seqs[i]) for i in ok], dtype=np.int64), {offset + i: m for i, m in bad.items()})


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
            batch = embed_texts(emb, spec, texts[a:a + size], a, retry=retry_bad)
            state["rate"] = size / max(time.perf_counter() - t0, 1e-6)
            yield batch
            a += size

    return encode

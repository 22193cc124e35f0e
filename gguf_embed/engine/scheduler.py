"""The cross-request scheduler: one worker thread per model, the only caller of its Session.

Requests queue their (already tokenised) sequences. Each round the worker builds one
batch under a token budget: a small quota from every waiting request, then the rest
for the oldest requests. Sequences from requests that arrive together share llama.cpp
batches, a small request never waits behind more than about one round of a huge one,
and large requests finish in arrival order. Results go back to each request's own
future, in its own input order. A non-finite row fails only the request it belongs to (named
by its index in that request); the others in that round run again on the rebuilt context.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from ..errors import NonFiniteOutputError


class Runs(Protocol):
    """What the scheduler needs of a Session (tests hand it a fake)."""

    name: str
    n_embd: int

    def rows(self, seqs: list[np.ndarray], alone=None) -> np.ndarray: ...


@dataclass(eq=False)
class Job:
    seqs: list[np.ndarray]
    done: Callable[[np.ndarray | None, BaseException | None], None]
    result: np.ndarray  # (len(seqs), n_embd), filled as batches return
    cursor: int = 0  # next sequence to schedule
    filled: int = 0  # sequences whose vectors are in ``result``
    alone: bool = False  # batch-invariant: each sequence in a llama.cpp batch of its own


class Scheduler:
    def __init__(self, session: Runs, *, max_batch_tokens: int, on_batch: Callable[[int, int], None] | None = None):
        self.session = session
        self.max_batch_tokens = max(1, int(max_batch_tokens))
        self.on_batch = on_batch
        self._jobs: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"embed-{session.name}", daemon=True)
        self._thread.start()

    async def rows(self, seqs: list[np.ndarray], alone: bool = False) -> np.ndarray:
        """Raw pooled rows (n, n_embd) for framed token sequences, in order; ``alone``: each sequence
        runs in a batch of its own, so its row does not depend on what else was queued."""
        if not seqs:
            return np.zeros((0, self.session.n_embd), dtype=np.float32)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()

        def done(result, error):
            def settle():
                if fut.done():
                    return
                if error is not None:
                    fut.set_exception(error)
                else:
                    fut.set_result(result)

            loop.call_soon_threadsafe(settle)

        job = Job(seqs, done, np.empty((len(seqs), self.session.n_embd), dtype=np.float32), alone=alone)
        with self._cv:
            self._jobs.append(job)
            self._cv.notify()
        return await fut

    def close(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)

    def _take_round(self) -> list[tuple[Job, int, int]]:
        """Slices (job, start, stop) for one batch under the token budget.

        Every waiting request first gets a small quota (so a short one finishes in this
        round, whatever else is queued); the rest of the budget goes to the oldest
        requests first, so large ones finish in arrival order instead of all being
        stretched together.
        """
        budget = self.max_batch_tokens
        quota = max(1, budget // (4 * len(self._jobs)))
        taken: dict[Job, list[int]] = {}

        def take(job: Job, limit: int) -> int:
            start = stop = job.cursor
            used = 0
            while stop < len(job.seqs):
                n = len(job.seqs[stop])
                if used + n > limit and (stop > start or job in taken):
                    break
                used += n
                stop += 1
            if stop > start:
                span = taken.setdefault(job, [start, start])
                span[1] = stop
                job.cursor = stop
            return used

        for job in list(self._jobs):
            budget -= take(job, min(quota, budget))
            if budget <= 0:
                break
        for job in list(self._jobs):
            if budget <= 0:
                break
            budget -= take(job, budget)
        for job, _ in taken.items():
            if job.cursor >= len(job.seqs):
                self._jobs.remove(job)
        return [(job, a, b) for job, (a, b) in taken.items()]

    def _fail_one(self, picks: list[tuple[Job, int, int]], exc: NonFiniteOutputError) -> None:
        """Fail the request whose sequence gave ``exc`` (its own index in the message); queue the
        others' slices of this round again, at the front, in their order."""
        offset, culprit, error = 0, None, exc
        for job, a, b in picks:
            if offset <= exc.index < offset + (b - a):
                culprit, error = job, NonFiniteOutputError.for_input(a + exc.index - offset, param=exc.param)
                break
            offset += b - a
        failed = [job for job, _, _ in picks if culprit is None or job is culprit]
        with self._cv:
            for job, a, _ in reversed(picks):
                if job in failed:
                    if job in self._jobs:
                        self._jobs.remove(job)
                    continue
                job.cursor = a
                if job not in self._jobs:
                    self._jobs.appendleft(job)
        for job in failed:
            job.done(None, error)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._stop:
                    self._cv.wait()
                if self._stop and not self._jobs:
                    return
                picks = self._take_round()
            seqs = [s for job, a, b in picks for s in job.seqs[a:b]]
            alone = np.repeat([job.alone for job, _, _ in picks], [b - a for _, a, b in picks])
            try:
                vectors = self.session.rows(seqs, alone=alone)
            except NonFiniteOutputError as exc:
                self._fail_one(picks, exc)
                continue
            except BaseException as exc:  # a failed batch fails its requests, never the worker
                for job, _, _ in picks:
                    with self._cv:
                        if job in self._jobs:
                            self._jobs.remove(job)
                    job.done(None, exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(seqs), int(sum(len(s) for s in seqs)))
            row = 0
            for job, a, b in picks:
                job.result[a:b] = vectors[row:row + (b - a)]
                row += b - a
                job.filled += b - a
                if job.filled == len(job.seqs):
                    job.done(job.result, None)

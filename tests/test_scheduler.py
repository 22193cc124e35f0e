"""The cross-request scheduler with a fake session: fair rounds, each request's own order, failures
that fail only their own requests."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from gguf_embed.engine.scheduler import Scheduler

pytestmark = pytest.mark.quick


class FakeSession:
    """Rows that say which sequence they came from: row = [first token, length, call number]."""

    name = "fake"
    n_embd = 3

    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None):
        self.calls: list[list[int]] = []  # first token of each sequence, per call
        self.alone: list[list[bool]] = []  # the batch-invariant flag of each sequence, per call
        self.fail_on, self.gate = fail_on, gate

    def rows(self, seqs, alone=None):
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append([int(s[0]) for s in seqs])
        self.alone.append([bool(a) for a in np.broadcast_to(bool(alone) if alone is None else alone, len(seqs))])
        if self.fail_on is not None and any(int(s[0]) == self.fail_on for s in seqs):
            raise RuntimeError("backend failure")
        return np.array([[s[0], len(s), len(self.calls)] for s in seqs], dtype=np.float32)


def seqs(start: int, n: int, length: int = 4) -> list[np.ndarray]:
    return [np.full(length, start + i, dtype=np.int32) for i in range(n)]


def run(coro):
    return asyncio.run(coro)


def test_each_request_gets_its_own_rows_in_order():
    session = FakeSession()
    sched = Scheduler(session, max_batch_tokens=16)

    async def main():
        return await asyncio.gather(sched.rows(seqs(100, 7)), sched.rows(seqs(200, 3)), sched.rows(seqs(300, 1)))

    try:
        a, b, c = run(main())
    finally:
        sched.close()
    assert a[:, 0].tolist() == list(range(100, 107))
    assert b[:, 0].tolist() == [200, 201, 202] and c[:, 0].tolist() == [300]
    assert all(sum(4 for _ in call) <= 16 for call in session.calls)  # every round within the budget


def test_a_small_request_is_not_stuck_behind_a_large_one():
    gate = threading.Event()
    session = FakeSession(gate=gate)
    sched = Scheduler(session, max_batch_tokens=32)

    async def main():
        big = asyncio.ensure_future(sched.rows(seqs(1000, 64)))
        await asyncio.sleep(0.05)  # the big request is queued first
        small = asyncio.ensure_future(sched.rows(seqs(5, 1)))
        await asyncio.sleep(0.05)
        gate.set()
        return await big, await small

    try:
        big, small = run(main())
    finally:
        sched.close()
    rounds_with_small = [i for i, call in enumerate(session.calls) if 5 in call]
    assert rounds_with_small and rounds_with_small[0] <= 1  # the first or second round, not the last
    assert big[:, 0].tolist() == list(range(1000, 1064)) and small[0, 0] == 5
    assert len(session.calls) >= 64 * 4 // 32


def test_a_failed_batch_fails_its_requests_and_the_worker_goes_on():
    session = FakeSession(fail_on=7)
    sched = Scheduler(session, max_batch_tokens=4)  # one sequence per round

    async def main():
        bad = sched.rows(seqs(7, 1))
        good = sched.rows(seqs(8, 2))
        return await asyncio.gather(bad, good, return_exceptions=True)

    try:
        bad, good = run(main())
        after = run(sched.rows(seqs(20, 1)))
    finally:
        sched.close()
    assert isinstance(bad, RuntimeError)
    assert good[:, 0].tolist() == [8, 9] and after[0, 0] == 20


def test_batches_are_counted():
    seen = []
    sched = Scheduler(FakeSession(), max_batch_tokens=8, on_batch=lambda n, t: seen.append((n, t)))
    try:
        run(sched.rows(seqs(1, 4)))
    finally:
        sched.close()
    assert sum(n for n, _ in seen) == 4 and sum(t for _, t in seen) == 16
    assert all(t <= 8 for _, t in seen)


def test_an_empty_request_returns_at_once():
    sched = Scheduler(FakeSession(), max_batch_tokens=8)
    try:
        out = run(asyncio.wait_for(sched.rows([]), 2))
    finally:
        sched.close()
    assert out.shape == (0, 3)


def test_a_batch_invariant_request_flags_only_its_own_sequences():
    gate = threading.Event()
    session = FakeSession(gate=gate)
    sched = Scheduler(session, max_batch_tokens=64)

    async def main():
        first = asyncio.ensure_future(sched.rows(seqs(1, 1)))  # holds the worker until both others queue
        await asyncio.sleep(0.05)
        packed = asyncio.ensure_future(sched.rows(seqs(100, 3)))
        alone = asyncio.ensure_future(sched.rows(seqs(200, 2), alone=True))
        await asyncio.sleep(0.05)
        gate.set()
        return await first, await packed, await alone

    try:
        _, packed, alone = run(main())
    finally:
        sched.close()
    flags = {tok: a for call, al in zip(session.calls, session.alone) for tok, a in zip(call, al)}
    assert {t: flags[t] for t in (100, 101, 102, 200, 201)} == {100: False, 101: False, 102: False,
                                                                200: True, 201: True}
    assert any(100 in call and 200 in call for call in session.calls)  # the two still share a round
    assert packed[:, 0].tolist() == [100, 101, 102] and alone[:, 0].tolist() == [200, 201]

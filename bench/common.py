"""What the benchmarks share. Each script in bench/ imports it first (``python bench/X.py`` puts
bench/ itself on sys.path), which puts the repository root first on sys.path, so that
``gguf_embed`` and ``tools`` import from this checkout.

- ``ROOT``, ``parser(__doc__)`` (the script's docstring as its ``--help``), ``work_dir``;
- ``make_texts``: synthetic English texts of a given length, the workloads of the speed benchmarks;
- ``interleaved``: every configuration once per repetition, repetitions interleaved, so that other
  load on a shared machine falls on all of them alike; ``repeat``: one run, repeated; then the best
  or the median of each;
- ``latency_quantiles``; ``md_header`` / ``md_row``: Markdown tables;
- ``free_port`` / ``run_server``: a server under test as a subprocess; ``gguf_embed_served``: ours, for a block.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` shows the script's docstring as written."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def work_dir(prefix: str, given: str | Path | None = None) -> Path:
    """``given`` when there is one, else a new temporary folder named ``prefix...``."""
    return Path(given) if given else Path(tempfile.mkdtemp(prefix=prefix))


WORDS = (
    "the of and to in is was for that on with as by at from his an were are which this be or have had "
    "one not but all they their there been has more when who will would no if out so said what up its "
    "about into than them can only other new some could time these two may then do first any my now such "
    "like our over man me even most made after also did many before must through back years where much "
    "your way well down should because each just those people how too little state good very make world "
    "still own see men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three model vector "
    "embedding search retrieval local quantised document query passage answer question energy light"
).split()


def make_texts(n: int, n_words: int, seed: int) -> list[str]:
    """``n`` sentences of about ``n_words`` common words each (normal spread of 15 %, at most 110 %)."""
    import numpy as np  # here: some scripts set OMP_NUM_THREADS before numpy loads

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(np.clip(rng.normal(n_words, n_words * 0.15), 1, n_words * 1.1))
        words = rng.choice(WORDS, size=k)
        out.append(" ".join(words).capitalize() + ".")
    return out


@dataclass
class Timing:
    """One configuration's wall times, one per repetition, and what its last run returned (when kept)."""

    seconds: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def interleaved(runs: dict[Hashable, Callable[[], Any]], reps: int, keep: bool = False) -> dict[Hashable, Timing]:
    """Each of ``runs`` once per repetition, in order, ``reps`` times (no warm-up: the caller's).
    ``keep``: hold on to each run's last result (else it is dropped as soon as it is timed)."""
    out = {key: Timing() for key in runs}
    for _ in range(reps):
        for key, fn in runs.items():
            t = time.perf_counter()
            result = fn()
            out[key].seconds.append(time.perf_counter() - t)
            if keep:
                out[key].result = result
            del result
    return out


def repeat(fn: Callable[[], Any], reps: int, keep: bool = False) -> Timing:
    """``fn`` run ``reps`` times in a row (no warm-up: the caller's)."""
    return interleaved({None: fn}, reps, keep)[None]


def latency_quantiles(latencies: list[float]) -> tuple[float, float]:
    """(p50, p99) of request latencies; NaN for fewer than two."""
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return q[49], q[98]


def md_header(*columns: str) -> str:
    """A Markdown table's header and rule."""
    return "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"


def md_row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``url``/health answers 200; exits the benchmark when the server dies or never answers."""
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.args}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not come up")


@contextlib.contextmanager
def gguf_embed_served(model, *extra: str, threads: int | None = None):
    """``gguf-embed serve -m MODEL EXTRA`` on a free port, until the block ends: its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gguf_embed", "serve", "-m", str(model), "--port", str(port), *extra]
    proc = run_server(cmd + (["--threads", str(threads)] if threads else []), url)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run_server(cmd: list[str], url: str) -> subprocess.Popen:
    """``cmd`` started quietly, once it serves ``url``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(url, proc)
    return proc

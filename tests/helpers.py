"""What the tests share: cosines, a server running in a thread or as the real command, a per-quantisation
converter."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import numpy as np

from gguf_embed.heads.pooling import row_cosines

__all__ = ["cos", "RunningServer", "served", "per_quant"]


def cos(a, b) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``: how vectors from different batch
    compositions are compared (their element-wise values differ by float noise)."""
    return row_cosines(np.atleast_2d(a), np.atleast_2d(b))


def per_quant(convert: Callable[[str, Path], Path], folder: Path, stem: str, default: str) -> Callable[[str], Path]:
    """``get(quant)``: the model converted at that type once per test session, then reused."""
    cache: dict[str, Path] = {}

    def get(quant: str = default) -> Path:
        if quant not in cache:
            cache[quant] = convert(quant, folder / f"{stem}-{quant}.gguf")
        return cache[quant]

    return get


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(*args, env: dict | None = None, log: Path | None = None, timeout: float = 60):
    """``gguf-embed serve --port PORT ARGS`` in a process of its own, once it answers /health: its URL.
    Its output goes to ``log`` (shown when it fails to come up)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") if log else contextlib.nullcontext(subprocess.DEVNULL) as out:
        proc = subprocess.Popen([sys.executable, "-m", "gguf_embed", "serve", "--port", str(port), *map(str, args)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    said = lambda: log.read_text(errors="replace")[-3000:] if log else "see its log"  # noqa: E731
    try:
        deadline = time.time() + timeout
        while True:
            assert proc.poll() is None, said()
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, said()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


class RunningServer:
    """An app served by uvicorn on a free 127.0.0.1 port in a thread, for the real HTTP clients."""

    def __init__(self, app):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while httpx.get(self.url + "/health").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)

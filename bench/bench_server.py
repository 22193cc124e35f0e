"""Concurrent load against ``gguf-embed serve`` and, when available, llama.cpp's ``llama-server``
serving the same GGUF: requests/s, inputs/s, p50/p99 latency, and a check of every response
against the vectors of the same texts sent alone.

    .venv/bin/python bench/bench_server.py --gguf all-minilm-l6-v2-F16.gguf \\
        [--llama-server PATH] [--clients 16 32] [--seconds 30]

llama-server is started as ``llama-server -m GGUF --embeddings --pooling POOLING -t T -c 4096 -np 8
-b 512 -ub 512 -fa on`` (8 parallel slots of 512 tokens: one per request being served).
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from common import ROOT, free_port, latency_quantiles, md_header, md_row, parser, run_server
from tools.texts import VARIED_TEXTS


def text_pool(n: int = 400) -> list[str]:
    rng = random.Random(5)
    return [f"{rng.choice(VARIED_TEXTS)} {rng.choice(VARIED_TEXTS)} #{i}".replace("\n", " ") for i in range(n)]


MODEL = {"name": ""}


def embed(http: httpx.Client, url: str, texts: list[str]) -> np.ndarray:
    r = http.post(url + "/v1/embeddings", json={"input": texts, "model": MODEL["name"], "encoding_format": "float"})
    r.raise_for_status()
    data = sorted(r.json()["data"], key=lambda d: d["index"])
    v = np.array([d["embedding"] for d in data], dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def load(url: str, pool: list[str], ref: dict[str, np.ndarray], clients: int, seconds: float,
         sizes: tuple[int, int]) -> dict:
    stop = time.time() + seconds
    lat, inputs, errors, wrong = [], [0], [0], [0]
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=300) as http:
            while time.time() < stop:
                texts = rng.sample(pool, rng.randint(*sizes))
                t0 = time.perf_counter()
                try:
                    got = embed(http, url, texts)
                except (httpx.HTTPError, KeyError, ValueError):
                    with lock:
                        errors[0] += 1
                    continue
                dt = time.perf_counter() - t0
                expect = np.stack([ref[t] for t in texts])
                bad = len(got) != len(texts) or float((got * expect).sum(1).min()) < 0.99999
                with lock:
                    lat.append(dt)
                    inputs[0] += len(texts)
                    wrong[0] += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    p50, p99 = latency_quantiles(lat)
    return {"requests": len(lat), "req_s": len(lat) / wall, "inputs_s": inputs[0] / wall, "p50": p50,
            "p99": p99, "errors": errors[0], "wrong": wrong[0]}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--llama-server", default=shutil.which("llama-server"))
    ap.add_argument("--clients", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--pooling", default="mean", help="llama-server's --pooling: the model's (last for Qwen3)")
    ap.add_argument("--pool", type=int, default=400, help="distinct texts (each is embedded alone as the reference)")
    ap.add_argument("--max-texts", type=int, default=64, help="texts per request: 1 to this")
    args = ap.parse_args()
    pool = text_pool(args.pool)
    sizes = (1, args.max_texts)
    MODEL["name"] = args.gguf.name  # gguf-embed accepts the file name; llama-server ignores the field
    rows = []

    servers = [("gguf-embed serve", lambda port: [str(ROOT / ".venv/bin/gguf-embed"), "serve", "-m", str(args.gguf),
                                                  "--port", str(port), "--threads", str(args.threads)])]
    if args.llama_server and Path(args.llama_server).exists():
        servers.append(("llama-server", lambda port: [args.llama_server, "-m", str(args.gguf), "--embeddings",
                                                      "--pooling", args.pooling, "--port", str(port), "-t", str(args.threads),
                                                      "-c", "4096", "-np", "8", "-b", "512", "-ub", "512", "-fa", "on"]))
    else:
        print("llama-server not found (pass --llama-server PATH): measuring gguf-embed only")

    for name, cmd in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = run_server(cmd(port), url)
        try:
            with httpx.Client(timeout=120) as http:  # reference: every text alone
                ref = {t: embed(http, url, [t])[0] for t in pool}
            for clients in args.clients:
                r = load(url, pool, ref, clients, args.seconds, sizes)
                rows.append((name, clients, r))
                print(name, clients, r, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"\n{args.gguf.name}, {args.threads} threads, clients sending {sizes[0]}-{sizes[1]} texts per request, "
          f"{args.seconds:.0f} s each\n")
    print(md_header("server", "clients", "requests/s", "inputs/s", "p50 latency (s)", "p99 latency (s)", "errors",
                    "wrong vectors"))
    for name, clients, r in rows:
        print(md_row(name, clients, f"{r['req_s']:.1f}", f"{r['inputs_s']:.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}",
                     r["errors"], r["wrong"]))
    ours = {c: r for n, c, r in rows if n == "gguf-embed serve"}
    theirs = {c: r for n, c, r in rows if n == "llama-server"}
    for c in sorted(set(ours) & set(theirs)):
        print(f"\n{c} clients: throughput {ours[c]['inputs_s'] / theirs[c]['inputs_s']:.2f}x llama-server's, "
              f"p99 {ours[c]['p99']:.2f} s vs {theirs[c]['p99']:.2f} s")


if __name__ == "__main__":
    main()

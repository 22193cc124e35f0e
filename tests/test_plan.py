"""Memory planning against llama.cpp's own account, budget fitting, shape-true synthetic models."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gguf_embed import Embedder
from gguf_embed.engine import planning as plan
from gguf_embed.engine.session import measure_buffers
from gguf_embed.engine.settings import RuntimeSettings
from gguf_embed.cli import main
from gguf_embed.convert import convert_model
from gguf_embed.errors import InvalidInputError
from gguf_embed.cli.plan import plan_cmd
from gguf_embed.registry import load_registry

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20
ROUNDING = 0.01 * MiB  # llama.cpp logs MiB with two decimals


def reported(measured: dict, kind: str) -> int:
    return sum(v for k, v in measured["reported"].items() if k.startswith(kind + ":"))


@pytest.mark.parametrize("which, ctx, fa, fast", [
    ("minilm", None, None, None), ("minilm", None, "off", None), ("qwen", 512, None, None), ("qwen", 2048, None, None),
    ("qwen", 8192, None, None), ("qwen", 8192, "on", None), ("qwen", 2048, None, False), ("qwen", 8192, "on", False)])
def test_plan_matches_llama_cpp_allocation(minilm_gguf, tiny_qwen_gguf, which, ctx, fa, fast):
    path = minilm_gguf("F16") if which == "minilm" else tiny_qwen_gguf("F32")
    p = plan.estimate(path, n_ctx=ctx, flash_attn=fa, fast_path=fast)
    assert p.fast_path == (which == "qwen" and fast is None)
    m = measure_buffers(path, RuntimeSettings.of(**p.settings(), fast_path=fast))
    assert {k.split(":")[0] for k in m["reported"]} >= {"model", "compute", "output"}
    actual = sum(m["reported"].values())
    # weights, KV cache and outputs are exact; the compute buffer is a fitted estimate, off by
    # about 1 MiB for this 64-wide model with flash attention (the plan's FFN term is tiny here)
    assert abs(p.weights["CPU"] - reported(m, "model")) <= 0.01 * p.weights["CPU"]
    assert abs(p.kv["CPU"] - reported(m, "kv")) <= ROUNDING
    assert abs(p.output_at_start - reported(m, "output")) <= ROUNDING
    assert abs(p.compute["CPU"] - reported(m, "compute")) <= max(0.05 * reported(m, "compute"), 1.2 * MiB)
    assert abs(p.total_at_start - actual) <= max(0.10 * actual, 1.2 * MiB), (p, m)


def test_kv_and_compute_scale_with_context(tiny_qwen_gguf):
    shape = plan.read_shape(tiny_qwen_gguf("F32"))
    small, big = (plan.estimate(shape, n_ctx=c, flash_attn="off") for c in (1024, 4096))
    assert big.kv["CPU"] == 4 * small.kv["CPU"]
    assert big.compute["CPU"] > small.compute["CPU"]
    fa = plan.estimate(shape, n_ctx=4096, flash_attn="on")
    assert fa.compute["CPU"] < big.compute["CPU"]  # no n_ubatch x n_ctx F32 attention scores
    assert plan.estimate(shape, n_ctx=1000).kv["CPU"] == small.kv["CPU"]  # llama.cpp pads the context to 256
    q8 = plan.estimate(shape, n_ctx=4096, kv_type="q8_0", flash_attn="on")
    assert q8.kv["CPU"] == big.kv["CPU"] * 34 // 64
    # the all-token path on a stock llama.cpp: every token is an output, logits for a whole batch once it has run
    plain = plan.estimate(shape, n_ctx=4096, flash_attn="on", fast_path=False, reserve_logits=True)
    assert not plain.fast_path
    assert plain.output == 512 * (shape.n_vocab + shape.info.n_embd) * 4
    assert plain.output_at_start == 64 * (shape.n_vocab + shape.info.n_embd) * 4
    # ... and in the build make install patches: the embeddings only
    patched = plan.estimate(shape, n_ctx=4096, flash_attn="on", fast_path=False, reserve_logits=False)
    assert (patched.output, patched.output_at_start) == (512 * shape.info.n_embd * 4, 64 * shape.info.n_embd * 4)
    # the fast path: logits reserved for one output per sequence, never for a whole batch
    assert fa.fast_path
    assert fa.output_at_start == 64 * shape.n_vocab * 4
    stock_fa = plan.estimate(shape, n_ctx=4096, flash_attn="on", reserve_logits=True)
    assert stock_fa.output == 64 * (shape.n_vocab + shape.info.n_embd) * 4  # + the self-check's embeddings
    assert plan.estimate(shape, n_ctx=4096, flash_attn="on", reserve_logits=False).output == fa.output_at_start
    big_batch = plan.estimate(shape, n_ctx=4096, batch_tokens=4096, flash_attn="on", reserve_logits=True)
    big_plain = plan.estimate(shape, n_ctx=4096, batch_tokens=4096, flash_attn="on", fast_path=False,
                              reserve_logits=True)
    assert big_batch.output == stock_fa.output and big_plain.output == 8 * plain.output
    # with a real vocabulary the head's logits dominate the compute buffer of the all-token path
    real = plan.registry_shape(load_registry().get("qwen3-embedding-0.6b"), "Q8_0")
    fast_real = plan.estimate(real, n_ctx=8192, flash_attn="on")
    plain_real = plan.estimate(real, n_ctx=8192, flash_attn="on", fast_path=False)
    assert plain_real.compute["CPU"] >= 512 * real.n_vocab * 4 > 4 * fast_real.compute["CPU"]


def test_gpu_placement_follows_llama_cpp(tiny_qwen_gguf):
    shape = plan.read_shape(tiny_qwen_gguf("F32"))
    n_layer = shape.info.n_layer
    cpu = plan.estimate(shape, n_ctx=8192)
    assert "GPU" not in cpu.weights and cpu.placement == "everything on the CPU"
    full = plan.estimate(shape, n_ctx=8192, n_gpu_layers=-1, flash_attn="on")
    assert full.n_gpu_layers == n_layer + 1
    assert full.weights["GPU"] == sum(shape.layer_bytes) + shape.output_bytes + shape.tied_output_bytes
    assert shape.tied_output_bytes == shape.token_embd_bytes > 0  # tied head: a second copy on the GPU
    assert full.weights["CPU"] == shape.token_embd_bytes + shape.other_bytes  # embeddings stay on the CPU
    assert full.kv["CPU"] == 0 and full.kv["GPU"] == cpu.kv["CPU"]
    # one layer offloaded means the output layer: no repeating layer, no KV cache on the GPU yet
    head = plan.estimate(shape, n_ctx=8192, n_gpu_layers=1, flash_attn="on")
    assert head.weights["GPU"] == shape.output_bytes + shape.tied_output_bytes and head.kv["GPU"] == 0
    two = plan.estimate(shape, n_ctx=8192, n_gpu_layers=2, flash_attn="on")
    assert two.weights["GPU"] == head.weights["GPU"] + shape.layer_bytes[-1]
    assert two.kv["GPU"] == cpu.kv["CPU"] // n_layer
    assert two.placement == f"the output layer and 1 of {n_layer} layers on the GPU"


def test_budget_fitting(tiny_qwen_gguf, minilm_gguf):
    path = tiny_qwen_gguf("F32")
    n_layer = plan.read_shape(path).info.n_layer
    roomy = plan.fit_budget(path, 2**30, n_ctx=8192)
    assert roomy.n_gpu_layers == n_layer + 1 and roomy.kv_type == "f16" and roomy.batch_tokens == 512
    full = plan.estimate(path, n_ctx=8192, n_gpu_layers=-1, flash_attn="on")
    tight_budget = int(full.device_total("GPU") * 0.5)
    tight = plan.fit_budget(path, tight_budget, n_ctx=8192)
    assert tight.device_total("GPU") <= tight_budget
    assert (tight.kv_type, tight.batch_tokens) != ("f16", 512)
    assert tight.n_ctx == 8192  # a context the user asked for is kept
    # without --ctx, a shorter context keeps every layer on the GPU (for a model whose default is 8192)
    shape = plan.read_shape(path)
    long = dataclasses.replace(shape, info=dataclasses.replace(shape.info, max_tokens=8192, n_ctx_train=32768))
    small = plan.estimate(long, n_ctx=2048, batch_tokens=64, kv_type="q4_0", flash_attn="on", n_gpu_layers=-1)
    auto = plan.fit_budget(long, small.device_total("GPU"))
    assert auto.n_gpu_layers == n_layer + 1 and auto.n_ctx == 2048 and "context cut" in auto.notes[0]
    # with the context asked for, fewer layers instead (a budget only a partial offload fits; its compute
    # buffer holds a whole layer's activations on the device either way, so only weights and KV shrink)
    part = plan.estimate(long, n_ctx=8192, batch_tokens=64, kv_type="q4_0", flash_attn="on", n_gpu_layers=1)
    assert part.device_total("GPU") < plan.estimate(long, n_ctx=8192, batch_tokens=64, kv_type="q4_0",
                                                    flash_attn="on", n_gpu_layers=-1).device_total("GPU")
    assert plan.fit_budget(long, part.device_total("GPU"), n_ctx=8192).n_gpu_layers <= n_layer
    kwargs = plan.settings_for_budget(path, 2**30, ctx=1024, batch_tokens=256)
    assert kwargs == {"n_gpu_layers": n_layer + 1, "n_ctx": 1024, "batch_tokens": 256, "flash_attn": "on",
                      "kv_type": "f16"}
    with pytest.raises(InvalidInputError, match=r"does not fit in 0\.00 GiB.*GiB over.*least offload.*GiB over"):
        plan.settings_for_budget(path, 1000, ctx=8192)
    assert plan.fit_budget(minilm_gguf("F16"), 2**30).batch_tokens == 512  # encoder: batch >= its limit


@pytest.mark.quick
def test_parse_size():
    assert plan.parse_size("3GB") == 3 * 2**30
    assert plan.parse_size("2.5GiB") == int(2.5 * 2**30)
    assert plan.parse_size("800MB") == 800 * 2**20
    assert plan.parse_size("3") == 3 * 2**30
    for bad in ("lots", "1.2.3GB", ""):
        with pytest.raises(InvalidInputError):
            plan.parse_size(bad)


def test_plan_command(tiny_qwen_gguf):
    runner = CliRunner()
    path = str(tiny_qwen_gguf("F32"))
    ok = runner.invoke(plan_cmd, [path, "--vram", "1GB", "--ctx", "8192"])
    assert ok.exit_code == 0, ok.output
    assert "fits 1GB" in ok.output and "all layers and the output layer on the GPU" in ok.output
    assert "KV cache" in ok.output and "GPU" in ok.output and "--n-gpu-layers" in ok.output
    assert "--batch-tokens" in ok.output and "--batch-size" not in ok.output
    assert "last-token fast path" in ok.output
    no = runner.invoke(plan_cmd, [path, "--vram", "1KB", "--ctx", "8192"])
    assert no.exit_code != 0 and "does not fit" in no.output and "GiB over" in no.output
    check = runner.invoke(plan_cmd, [path, "--check", "--ctx", "1024"])
    assert check.exit_code == 0, check.output
    assert "llama.cpp reports" in check.output and "llama.cpp allocated" in check.output
    bad = runner.invoke(plan_cmd, [path, "--vram", "lots"])
    assert bad.exit_code != 0 and "cannot read 'lots'" in bad.output


def test_encode_applies_vram_budget(tiny_qwen_gguf, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello\nworld\n")
    model = str(tiny_qwen_gguf("F32"))
    r = CliRunner().invoke(main, ["encode", str(src), "-m", model, "--vram", "1GB", "--ctx", "1024"])
    assert r.exit_code == 0, r.output
    assert "--vram 1GB:" in r.stderr and len(r.stdout.splitlines()) == 2
    bad = CliRunner().invoke(main, ["encode", str(src), "-m", model, "--vram", "1KB"])
    assert bad.exit_code != 0 and "does not fit" in bad.output


def load_synth():
    spec = importlib.util.spec_from_file_location("synth", ROOT / "tools" / "synth.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name, dtype, quant", [("qwen3-embedding-0.6b", "bf16", "F16"), ("bge-small-en-v1.5", "f16", "Q8_0")])
def test_synthetic_model_has_the_registry_shapes(tmp_path, name, dtype, quant):
    out = tmp_path / name
    subprocess.run([sys.executable, str(ROOT / "tools" / "synth.py"), name, str(out), "--layers", "1",
                    "--dtype", dtype], check=True, capture_output=True)
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert (out / "modules.json").is_file() and (out / "1_Pooling" / "config.json").is_file()
    # (the quantised Qwen3 tensor types are checked on the tiny model below; a 151,669-row
    # vocabulary takes llama.cpp's quantizer minutes on two cores)
    gguf_path = convert_model(str(out), tmp_path / f"{name}.gguf", quant).path
    shape = plan.read_shape(gguf_path)
    entry = load_registry().get(name)
    assert shape.info.n_embd == entry.shape.hidden == entry.dims and shape.n_vocab == entry.shape.vocab
    assert shape.n_ff == entry.shape.ffn and shape.n_head == entry.shape.heads
    if entry.shape.kv_heads:
        assert shape.n_head_kv == entry.shape.kv_heads and shape.head_dim == entry.shape.head_dim
    assert shape.info.pooling == entry.pooling and shape.info.prompts.get("query", "") == entry.prompts.get("query", "")
    one_layer = dataclasses.replace(entry, shape=dataclasses.replace(entry.shape, layers=1))
    assert_same_tensors(gguf_path, one_layer, quant)
    with Embedder(gguf_path) as emb:
        assert emb.embed(["a synthetic model embeds too"]).embeddings.shape == (1, entry.dims)


def test_synthetic_model_shards_like_the_hub(tmp_path, monkeypatch):
    synth = load_synth()
    monkeypatch.setattr(synth, "SHARD_BYTES", 4 * MiB)
    out = synth.synthesize("bge-small-en-v1.5", tmp_path / "bge", layers=2, dtype="f32")
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and (out / "model.safetensors.index.json").is_file()
    assert not (out / "model.safetensors").exists()
    gguf_path = convert_model(str(out), tmp_path / "bge.gguf", "F16").path
    shape = plan.read_shape(gguf_path)
    assert shape.info.n_layer == 2 and shape.n_vocab == 30522


def assert_same_tensors(gguf_path, entry, quant, mix=None):
    """The tensor table planned from models.toml is the file's: names, types and bytes."""
    import gguf

    from gguf_embed.model.tensor_table import tensor_table

    actual = {t.name: (t.tensor_type, int(t.n_bytes)) for t in gguf.GGUFReader(gguf_path).tensors}
    planned = {t.name: (t.type, t.n_bytes) for t in tensor_table(entry, quant, mix)}
    assert planned == actual
    if mix is not None:
        return
    from_file, from_registry = plan.read_shape(gguf_path), plan.registry_shape(entry, quant)
    for key in ("layer_bytes", "layer_repack_bytes", "token_embd_bytes", "output_bytes", "tied_output_bytes",
                "other_bytes", "n_vocab", "n_head", "n_head_kv", "head_dim", "n_ff", "has_output"):
        assert getattr(from_file, key) == getattr(from_registry, key), key


def tiny_entry(src, gguf_path, quant):
    import json

    from gguf_embed.registry import ModelEntry, Shape

    cfg = json.loads((src / "config.json").read_text())
    n_vocab = plan.read_shape(gguf_path).n_vocab
    return ModelEntry(
        name="tiny", hub_id="x/tiny", architecture="qwen3", pooling="last", dims=cfg["hidden_size"], max_tokens=512,
        default_quant=quant, license="apache-2.0",
        shape=Shape(hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"], heads=cfg["num_attention_heads"],
                    kv_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"], ffn=cfg["intermediate_size"],
                    vocab=n_vocab, max_positions=cfg["max_position_embeddings"]),
    )


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M", "Q5_K_M", "Q4_K_S", "F16"])
def test_registry_tensor_table_is_the_converted_files(tiny_qwen_src, tiny_qwen_gguf, model_dir, quant):
    """Planning without the file: the tiny Qwen3's shape as a models.toml entry, every mixture rule
    (the embedding mix's types for the token embeddings, attn_v and ffn_down) and the fallbacks a
    64-wide row forces."""
    gguf_path = tiny_qwen_gguf(quant)
    assert_same_tensors(gguf_path, tiny_entry(tiny_qwen_src, gguf_path, quant), quant)
    # a quantised decoder embedding file carries its own smallest-type head; direct types stay tied
    assert plan.read_shape(gguf_path).has_output == (quant != "F16")


@pytest.mark.parametrize("quant", ["Q4_K_M", "Q5_K_M"])
def test_the_tensor_table_follows_llamas_mix_too(tiny_qwen_src, tmp_path, quant):
    """``--mix llama``: llama.cpp's own mixture (more bits for some layers' attn_v and ffn_down only,
    the token embeddings at the head's type), planned as exactly."""
    from gguf_embed.convert import convert_model

    gguf_path = convert_model(str(tiny_qwen_src), tmp_path / "t.gguf", quant, mix="llama").path
    entry = tiny_entry(tiny_qwen_src, gguf_path, quant)
    assert_same_tensors(gguf_path, entry, quant, "llama")
    import gguf

    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(gguf_path).tensors}
    if quant == "Q4_K_M":  # llama.cpp favours some layers only; the embedding mix all of them
        assert len({types[n] for n in types if n.endswith("ffn_down.weight")}) == 2


def test_plan_from_models_toml_without_the_file(tmp_path):
    runner = CliRunner()
    empty = str(tmp_path / "no-models")
    r = runner.invoke(plan_cmd, ["qwen3-embedding-4b", "--quant", "Q4_K_M", "--vram", "3GB", "--ctx", "8192",
                                 "--json", "--models-dir", empty])
    assert r.exit_code == 0, r.output
    import json

    got = json.loads(r.stdout)
    n_layer = load_registry().get("qwen3-embedding-4b").shape.layers
    assert got["fits"] is True and got["n_gpu_layers"] == n_layer + 1 and got["batch_tokens"] >= 256
    assert got["ctx"] == 8192 and got["gpu_bytes"] <= 3 * 2**30 and got["fast_path"] is True
    assert set(got) >= {"fits", "n_gpu_layers", "batch_tokens", "kv_type", "ctx", "gpu_bytes"}
    table = runner.invoke(plan_cmd, ["qwen3-embedding-0.6b", "--quant", "Q8_0", "--models-dir", empty])
    assert table.exit_code == 0 and "from models.toml, no file" in table.output
    no = runner.invoke(plan_cmd, ["qwen3-embedding-8b", "--vram", "100MB", "--json", "--models-dir", empty])
    assert no.exit_code != 0 and json.loads(no.stdout.splitlines()[0])["fits"] is False
    assert "does not fit" in no.stderr
    check = runner.invoke(plan_cmd, ["qwen3-embedding-0.6b", "--check", "--models-dir", empty])
    assert check.exit_code != 0 and "--check needs the converted file" in check.output


def test_plan_json_check(tiny_qwen_gguf):
    import json

    r = CliRunner().invoke(plan_cmd, [str(tiny_qwen_gguf("F32")), "--check", "--json", "--ctx", "1024"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["measured_bytes"] > 0 and abs(got["planned_bytes"] - got["measured_bytes"]) <= 0.1 * got["measured_bytes"]

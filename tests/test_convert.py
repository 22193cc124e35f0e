"""Conversion: HF folder -> GGUF that llama.cpp embeds correctly with its own pooling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import keys
from gguf_embed.text import normalize as textnorm
from gguf_embed.cli import main
from gguf_embed.convert import convert_model
from gguf_embed.errors import ConversionError
from tools.models.tiny import QUERY_PROMPT
from tools.texts import VARIED_TEXTS

from .helpers import cos

assert len(VARIED_TEXTS) >= 50


def gguf_fields(path: Path) -> dict:
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}


def llama_embed(path: Path, texts: list[str]) -> np.ndarray:
    """Vectors from llama.cpp itself, pooled as the GGUF's metadata says (no gguf-embed runtime)."""
    fields = gguf_fields(path)
    norm = fields.get(keys.TEXT_NORMALIZER, "none")
    model = llama_cpp.Llama(str(path), embedding=True, n_ctx=512, n_batch=512, verbose=False)
    try:
        return np.array([model.embed(textnorm.apply(norm, t), normalize=True) for t in texts], dtype=np.float32)
    finally:
        model.close()


cosines = cos


@pytest.fixture(scope="module")
def minilm_reference(st_minilm):
    return st_minilm.encode(VARIED_TEXTS, convert_to_numpy=True)


@pytest.mark.parametrize(
    "quant, check",
    [
        ("F16", lambda c: c.min() >= 0.9999),
        ("Q8_0", lambda c: c.min() >= 0.998),
        ("Q4_K_M", lambda c: c.mean() >= 0.98),
    ],
)
def test_minilm_matches_sentence_transformers(minilm_gguf, minilm_reference, quant, check, record_property):
    c = cosines(llama_embed(minilm_gguf(quant), VARIED_TEXTS), minilm_reference)
    record_property(f"minilm_{quant}_cos", f"mean={c.mean():.5f} min={c.min():.5f}")
    print(f"all-MiniLM-L6-v2 {quant}: cosine mean {c.mean():.5f} min {c.min():.5f} over {len(c)} texts")
    assert check(c), (quant, c.mean(), c.min())


def _types(path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t in gguf.GGUFReader(path).tensors:
        if len(t.shape) > 1:
            out.setdefault(t.name.split(".")[-2] if t.name.startswith("blk.") else t.name, set()).add(t.tensor_type.name)
    return out


def test_the_embedding_mix_is_smaller_and_closer_than_llamas(minilm_gguf, minilm_reference, tmp_path):
    """convert's default mixture for an embedding model: token embeddings at the layers' type (they are
    looked up, never an output head), attn_v and ffn_down with more bits in every layer; against
    llama.cpp's own mixture of the same type (--mix llama), on all-MiniLM-L6-v2 Q4_K_M."""
    ours = minilm_gguf("Q4_K_M")
    llama = convert_model("all-minilm-l6-v2", tmp_path / "llama.gguf", "Q4_K_M", mix="llama").path
    t = _types(ours)
    assert t["token_embd.weight"] == {"Q5_0"}  # Q4_K does not divide 384-wide rows: llama.cpp's fallback
    assert t["attn_v"] == {"Q8_0"} and t["ffn_down"] == {"Q6_K"}  # every layer
    assert _types(llama)["token_embd.weight"] == {"Q8_0"} and _types(llama)["ffn_down"] == {"Q4_K", "Q6_K"}
    assert gguf_fields(ours)[keys.QUANT_MIX] == "embedding" and gguf_fields(llama)[keys.QUANT_MIX] == "llama"
    c_ours = cosines(llama_embed(ours, VARIED_TEXTS), minilm_reference)
    c_llama = cosines(llama_embed(llama, VARIED_TEXTS), minilm_reference)
    print(f"Q4_K_M embedding mix: {ours.stat().st_size / 2**20:.2f} MiB, cos mean {c_ours.mean():.5f} min "
          f"{c_ours.min():.5f}; llama mix: {llama.stat().st_size / 2**20:.2f} MiB, mean {c_llama.mean():.5f} "
          f"min {c_llama.min():.5f}")
    assert ours.stat().st_size < 0.85 * llama.stat().st_size
    assert 1 - c_ours.mean() < 0.7 * (1 - c_llama.mean()) and c_ours.min() > c_llama.min()
    with pytest.raises(ConversionError, match="unknown tensor mix"):
        convert_model("all-minilm-l6-v2", tmp_path / "x.gguf", "Q4_K_M", mix="lm")


def test_tiny_qwen3_matches_sentence_transformers(tiny_qwen_gguf, st_tiny_qwen):
    path = tiny_qwen_gguf("F32")
    prompt = gguf_fields(path)[keys.PROMPT + "query"]
    assert prompt == QUERY_PROMPT  # carried by the file, read back from it here
    docs = cosines(llama_embed(path, VARIED_TEXTS), st_tiny_qwen.encode(VARIED_TEXTS))
    queries = cosines(
        llama_embed(path, [prompt + t for t in VARIED_TEXTS]), st_tiny_qwen.encode(VARIED_TEXTS, prompt_name="query")
    )
    assert docs.min() >= 0.9999, docs.min()
    assert queries.min() >= 0.9999, queries.min()


def test_token_ids_match_hf(minilm_gguf, tiny_qwen_gguf, st_minilm, st_tiny_qwen):
    for path, st in ((minilm_gguf("F16"), st_minilm), (tiny_qwen_gguf("F32"), st_tiny_qwen)):
        norm = gguf_fields(path).get(keys.TEXT_NORMALIZER, "none")
        vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        for text in VARIED_TEXTS:
            ours = vocab.tokenize(textnorm.apply(norm, text).encode(), add_bos=True, special=False)
            assert ours == st.tokenizer(text)["input_ids"], (path.name, text)
        vocab.close()


def test_qwen3_metadata(tiny_qwen_gguf, tiny_qwen_src):
    f = gguf_fields(tiny_qwen_gguf("F32"))
    tok = json.loads((tiny_qwen_src / "tokenizer.json").read_text())
    eot = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|endoftext|>")
    assert f["general.architecture"] == "qwen3"
    assert f["qwen3.pooling_type"] == gguf.PoolingType.LAST
    assert f["qwen3.attention.causal"] is True
    assert f["tokenizer.ggml.pre"] == "qwen2"
    assert f["tokenizer.ggml.add_eos_token"] is True
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert f["tokenizer.ggml.eos_token_id"] == eot
    assert f[keys.PROMPT + "document"] == ""
    assert f[keys.MATRYOSHKA_MIN] == 16
    assert f[keys.MAX_TOKENS] == 512
    assert f["qwen3.context_length"] == 32768
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(tiny_qwen_gguf("F32")).tensors}


def test_bert_metadata(minilm_gguf):
    f = gguf_fields(minilm_gguf("F16"))
    assert f["general.architecture"] == "bert"
    assert f["bert.pooling_type"] == gguf.PoolingType.MEAN
    assert f["bert.attention.causal"] is False
    assert f["tokenizer.ggml.model"] == "bert"
    assert f[keys.MAX_TOKENS] == 256
    assert f[keys.NORMALIZE] is True
    assert f[keys.TEXT_NORMALIZER] == "nfd_strip_lower"
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(minilm_gguf("F16")).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["token_types.weight"] == gguf.GGMLQuantizationType.F32
    assert types["blk.0.attn_output_norm.weight"] == gguf.GGMLQuantizationType.F32


def test_registry_overrides_and_cli_default_path(tmp_path, minilm_src):
    result = CliRunner().invoke(main, ["convert", "all-minilm-l6-v2", "--models-dir", str(tmp_path), "--quant", "bf16"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "all-minilm-l6-v2-BF16.gguf"
    assert result.stdout.strip() == str(out)
    f = gguf_fields(out)
    assert f[keys.REGISTRY_NAME] == "all-minilm-l6-v2"
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.BF16


def test_pickle_weights_read_only_on_request(tmp_path, minilm_src, minilm_gguf):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    src = tmp_path / "pickled"
    shutil.copytree(minilm_src, src)
    torch.save(load_file(src / "model.safetensors"), src / "pytorch_model.bin")
    (src / "model.safetensors").unlink()
    out = tmp_path / "p.gguf"
    result = CliRunner().invoke(main, ["convert", str(src), "-o", str(out), "--quant", "F16"])
    assert result.exit_code != 0
    assert "pickle" in result.output and "--allow-pickle" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".p.gguf*"))
    # with the flag, the restricted reader gives the same tensors as safetensors
    convert_model(str(src), out, "F16", allow_pickle=True)
    a, b = gguf.GGUFReader(out), gguf.GGUFReader(minilm_gguf("F16"))
    for ta, tb in zip(sorted(a.tensors, key=lambda t: t.name), sorted(b.tensors, key=lambda t: t.name)):
        assert ta.name == tb.name and np.array_equal(ta.data, tb.data)


def test_hostile_pickle_is_refused(tmp_path, minilm_src):
    import pickle
    import zipfile

    src = tmp_path / "evil"
    src.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(minilm_src / name, src / name)

    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    with zipfile.ZipFile(src / "pytorch_model.bin", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": Boom()}))
    with pytest.raises(ConversionError, match="refusing to load builtins.print"):
        convert_model(str(src), tmp_path / "e.gguf", "F16", allow_pickle=True)


def _copy_without(src: Path, dest: Path, *skip: str) -> Path:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*skip))
    return dest


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing_tokenizer", "no tokenizer.json"),
        ("unknown_arch", "unsupported architecture 'LlamaForCausalLM'"),
        ("unmapped_tensor", "cannot map tensor 'encoder.mystery.weight'"),
        ("no_config", "no config.json"),
    ],
)
def test_bad_sources_fail_cleanly(tmp_path, minilm_src, case, expect):
    src = _copy_without(minilm_src, tmp_path / "m", "tokenizer.json" if case == "missing_tokenizer" else "__none__")
    if case == "unknown_arch":
        cfg = json.loads((src / "config.json").read_text())
        cfg["architectures"] = ["LlamaForCausalLM"]
        cfg["model_type"] = "llama"
        (src / "config.json").write_text(json.dumps(cfg))
    elif case == "unmapped_tensor":
        from safetensors.numpy import load_file, save_file

        tensors = load_file(src / "model.safetensors")
        tensors["encoder.mystery.weight"] = np.zeros((2, 2), np.float32)
        save_file(tensors, src / "model.safetensors")
    elif case == "no_config":
        (src / "config.json").unlink()
    out = tmp_path / "out" / "x.gguf"
    result = CliRunner().invoke(main, ["convert", str(src), "-o", str(out), "--quant", "Q8_0"])
    assert result.exit_code != 0
    assert expect in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_hub_download_path_offline(tmp_path, monkeypatch, tiny_qwen_src):
    """The Hub path: a repo already in the local Hugging Face cache converts offline; a missing one fails cleanly."""
    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-qwen3-embedding"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_qwen_src, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    res = convert_model("acme/tiny-qwen3-embedding", tmp_path / "hub.gguf", "F16")
    assert res.source == repo / "snapshots" / commit
    result = CliRunner().invoke(main, ["convert", "acme/not-there", "-o", str(tmp_path / "n.gguf")])
    assert result.exit_code != 0 and "cannot download acme/not-there" in result.output
    result = CliRunner().invoke(main, ["convert", "bge-small-en-v1.5", "-o", str(tmp_path / "b.gguf")])
    assert result.exit_code != 0 and "cannot download BAAI/bge-small-en-v1.5" in result.output
    assert not (tmp_path / "b.gguf").exists()
    result = CliRunner().invoke(main, ["convert", "multilingual-e5-small", "-o", str(tmp_path / "e.gguf")])
    assert result.exit_code != 0 and "cannot download intfloat/multilingual-e5-small" in result.output


@pytest.mark.parametrize("quant", ["Q6_K", "Q5_K_M"])
def test_other_k_quants_load_and_embed(minilm_gguf, minilm_reference, quant):
    c = cosines(llama_embed(minilm_gguf(quant), VARIED_TEXTS), minilm_reference)
    assert c.mean() >= 0.99, c.mean()


PEAK_RSS_SCRIPT = r"""
import sys
from gguf_embed.convert import convert_model

def peak():  # VmHWM: this process's own high-water mark (ru_maxrss would carry the parent's over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

before = peak()
convert_model(sys.argv[1], sys.argv[2], sys.argv[3])
print(before, peak())
"""


def test_conversion_streams_tensors(tmp_path, minilm_src):
    """Peak memory grows by a few times the largest tensor, not by the model's size."""
    import subprocess
    import sys

    from safetensors.numpy import save_file

    src = tmp_path / "big"
    src.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "modules.json", "sentence_bert_config.json"):
        shutil.copy(minilm_src / name, src / name)
    shutil.copytree(minilm_src / "1_Pooling", src / "1_Pooling")
    n_layers, hidden, ffn = 8, 1024, 8192  # 8 x 2 x 32 MiB of F32 feed-forward weights, 512 MiB in all
    cfg = json.loads((minilm_src / "config.json").read_text())
    cfg.update(num_hidden_layers=n_layers, hidden_size=hidden, intermediate_size=ffn)
    (src / "config.json").write_text(json.dumps(cfg))
    rng = np.random.default_rng(0)
    for i in range(n_layers):  # one shard per layer, as large checkpoints are stored
        block = {
            f"encoder.layer.{i}.intermediate.dense.weight": rng.standard_normal((ffn, hidden), dtype=np.float32),
            f"encoder.layer.{i}.output.dense.weight": rng.standard_normal((hidden, ffn), dtype=np.float32),
        }
        save_file(block, str(src / f"model-{i:05d}-of-{n_layers:05d}.safetensors"))
    largest = ffn * hidden * 4
    for quant in ("F16", "Q8_0"):
        out = tmp_path / f"big-{quant}.gguf"
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(src), str(out), quant],
                              capture_output=True, text=True, check=True)
        before, after = map(int, proc.stdout.split()[-2:])
        grown = after - before
        print(f"{quant}: model 512 MiB F32, largest tensor {largest >> 20} MiB, peak RSS grew {grown >> 20} MiB")
        assert grown < 4 * largest, grown
        assert out.stat().st_size > 100 * 2**20

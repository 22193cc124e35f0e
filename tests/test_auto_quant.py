"""``--quant auto``: the fastest lossless type per machine (BF16 where llama.cpp's CPU backend has
AVX512-BF16, F16 elsewhere or with a GPU), what plan and inspect say about it, and that a BF16
file embeds real texts as sentence-transformers fp32 does."""

from __future__ import annotations

import json

import gguf
import llama_cpp
import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import Embedder, choices
from gguf_embed.cli import main
from gguf_embed.engine import llama, machine
from gguf_embed.quality.texts import texts as builtin_texts
from gguf_embed.registry import load_registry
from tools.texts import VARIED_TEXTS

from .helpers import cos


def llama_reports_bf16() -> bool:
    """The reference: llama.cpp's own system info, read here without gguf-embed."""
    llama_cpp.llama_backend_init()
    info = llama_cpp.llama_print_system_info().decode()
    return "AVX512_BF16 = 1" in info


@pytest.fixture
def no_bf16(monkeypatch):
    """A machine whose CPU and llama.cpp build lack AVX512-BF16 (and no GPU backend)."""
    monkeypatch.setattr(machine, "llama_cpu_features", lambda: {"AVX2": True, "AVX512": True})
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    monkeypatch.setattr(llama, "supports_gpu_offload", lambda: False)


def test_this_machine_follows_llama_cpp_and_cpuinfo():
    with open("/proc/cpuinfo") as fh:
        flags = next(ln for ln in fh if ln.startswith("flags")).split()
    expected = "BF16" if llama_reports_bf16() else "F16"
    if llama_cpp.llama_supports_gpu_offload():
        expected = "F16"
    choice = machine.lossless_type()
    assert choice.quant == expected, choice.reason
    assert choice.reason.startswith(expected + ":")
    feats = machine.llama_cpu_features()
    assert feats is not None and feats.get("AVX2") == ("avx2" in flags)  # the parsed report matches the CPU
    assert machine.lossless_type(gpu=True).quant == "F16"


def test_cpu_flags_alone_turn_it_off(monkeypatch):
    """The real llama.cpp report, a CPU-flag reader saying the CPU lacks AVX512-BF16: F16."""
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "fma"}))
    monkeypatch.setattr(llama, "supports_gpu_offload", lambda: False)
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    choice = machine.lossless_type()
    assert choice.quant == "F16" and "lacks" in choice.reason


def test_decision_table(monkeypatch):
    parsed = machine.parse_system_info("CPU : SSE3 = 1 | AVX2 = 1 | AVX512_BF16 = 1 | OPENMP = 1 | \nCUDA : ARCHS = 900 |")
    assert parsed == {"SSE3": True, "AVX2": True, "AVX512_BF16": True, "OPENMP": True}
    assert machine.parse_system_info("Metal : EMBED_LIBRARY = 1 |") is None
    cases = [  # (llama.cpp's CPU features, /proc/cpuinfo flags, expected)
        ({"AVX512_BF16": True}, frozenset(), "BF16"),  # no /proc/cpuinfo: llama.cpp's report decides
        ({"AVX512_BF16": True}, frozenset({"avx2", "avx512f"}), "F16"),  # built for it, this CPU lacks it
        ({"AVX2": True}, frozenset({"avx512_bf16"}), "F16"),  # built without it: the CPU's flag is not enough
        (None, frozenset({"avx512_bf16", "avx2"}), "BF16"),  # no report: the CPU's flags decide
        (None, frozenset({"avx2"}), "F16"),
    ]
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    for feats, flags, want in cases:
        monkeypatch.setattr(machine, "llama_cpu_features", lambda f=feats: f)
        monkeypatch.setattr(machine, "cpu_flags", lambda f=flags: f)
        assert machine.lossless_type(gpu=False).quant == want, (feats, flags)
        assert machine.lossless_type(gpu=True).quant == "F16"
    assert machine.resolve_quant("q8_0") == ("Q8_0", None)


def test_minilm_defaults_to_auto():
    entry = load_registry().get("all-minilm-l6-v2")
    assert entry.default_quant == choices.AUTO_QUANT and entry.default_quants() == choices.LOSSLESS_TYPES
    with pytest.raises(ValueError):
        entry.gguf_filename()


def convert_default(tmp_path, *extra):
    r = CliRunner().invoke(main, ["convert", "all-minilm-l6-v2", "--models-dir", str(tmp_path), *extra])
    assert r.exit_code == 0, r.output
    return r


def test_convert_auto_without_bf16_writes_f16(tmp_path, minilm_src, no_bf16):
    r = convert_default(tmp_path)  # models.toml says auto
    out = tmp_path / "all-minilm-l6-v2-F16.gguf"
    assert r.stdout.strip() == str(out) and "no AVX512-BF16" in r.stderr
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.F16
    # inspect and plan say what was chosen and why
    report = json.loads(CliRunner().invoke(main, ["inspect", str(out), "--json"]).stdout)
    assert report["quantization"] == "F16" and "no AVX512-BF16" in report["quant_choice"]
    assert report["lossless_here"]["quant"] == "F16"
    plan = CliRunner().invoke(main, ["plan", "all-minilm-l6-v2", "--models-dir", str(tmp_path)])
    assert plan.exit_code == 0, plan.output
    line = [ln for ln in plan.stdout.splitlines() if ln.startswith("weights")]
    assert len(line) == 1 and "F16" in line[0] and "no AVX512-BF16" in line[0], plan.stdout


@pytest.mark.skipif(not llama_reports_bf16() or llama_cpp.llama_supports_gpu_offload(),
                    reason="llama.cpp's CPU backend here lacks AVX512-BF16")
def test_convert_auto_with_bf16_writes_bf16(tmp_path, minilm_src):
    r = convert_default(tmp_path, "--quant", "auto")
    out = tmp_path / "all-minilm-l6-v2-BF16.gguf"
    assert r.stdout.strip() == str(out) and "AVX512-BF16" in r.stderr
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.BF16
    ins = CliRunner().invoke(main, ["inspect", "all-minilm-l6-v2", "--models-dir", str(tmp_path)])
    assert ins.exit_code == 0 and "--quant auto on this machine: BF16" in ins.stdout, ins.output
    # without a file, plan reads the shape at the type convert would write
    plan = CliRunner().invoke(main, ["plan", "all-minilm-l6-v2", "--models-dir", str(tmp_path / "none")])
    assert "at BF16" in plan.stdout and "weights BF16" in plan.stdout, plan.output


def test_bf16_embeds_like_fp32(minilm_gguf, st_minilm):
    texts = VARIED_TEXTS + [t for t in builtin_texts() if len(t) < 400][:60]
    ref = st_minilm.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    with Embedder(minilm_gguf("BF16"), n_threads=2) as emb:
        got = emb.embed(texts).embeddings
    c = cos(got, ref)
    assert c.min() >= 0.9999, (float(c.min()), texts[int(np.argmin(c))])

"""``gguf-embed doctor``: the build's backends and devices as llama.cpp itself reports them, the
--quant auto type as /proc/cpuinfo and llama.cpp's system info decide it, and a model's plan equal
to what ``gguf-embed plan`` gives for the same settings."""

from __future__ import annotations

import json

import llama_cpp
import pytest
from click.testing import CliRunner

from gguf_embed.cli import main

pytestmark = pytest.mark.quick


def doctor(*args):
    res = CliRunner().invoke(main, ["doctor", *map(str, args)])
    return res.exit_code, res.output


def test_report_names_the_cpu_and_llama_cpp_s_own_view():
    code, out = doctor("--json")
    assert code == 0, out
    report = json.loads(out)
    info = llama_cpp.llama_print_system_info().decode()
    assert "CPU" in report["backends"]
    assert any(d["type"] == "cpu" and d["total_bytes"] > 0 for d in report["devices"])
    assert report["gpu_offload"] == bool(llama_cpp.llama_supports_gpu_offload())
    for feature in report["cpu"]["llama_cpp_features"]:  # each one llama.cpp says it uses (= 1)
        assert f"{feature} = 1" in info
    flags = open("/proc/cpuinfo").read() if report["cpu"]["machine"] == "x86_64" else ""
    bf16 = "avx512_bf16" in flags and "AVX512_BF16" in report["cpu"]["llama_cpp_features"]
    if not report["gpu_offload"]:
        assert report["quant_auto"]["type"] == ("BF16" if bf16 else "F16")
    assert report["plan"] is None


def test_a_cpu_build_says_it_has_no_gpu():
    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python has a GPU backend")
    code, out = doctor()
    assert code == 0, out
    assert "GPU offload: no" in out and "no GPU device" in out and "docs/guides/gpu.md" in out


def test_the_plan_is_what_plan_gives(minilm_gguf):
    code, out = doctor("-m", minilm_gguf(), "--json")
    assert code == 0, out
    plan = json.loads(out)["plan"]
    res = CliRunner().invoke(main, ["plan", str(minilm_gguf()), "--json"])
    assert res.exit_code == 0, res.output
    expect = json.loads(res.output)
    assert plan["device"] == "CPU" or llama_cpp.llama_supports_gpu_offload()
    if plan["device"] == "CPU":
        for key in ("n_gpu_layers", "batch_tokens", "kv_type", "flash_attn", "cpu_bytes", "gpu_bytes"):
            assert plan[key] == expect[key], key
        assert plan["n_ctx"] == expect["ctx"]


def test_an_unknown_model_is_one_line():
    code, out = doctor("-m", "no-such-model")
    assert code == 1 and "Traceback" not in out and len(out.strip().splitlines()) == 1

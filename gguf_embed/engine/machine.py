"""What this machine runs fastest: the CPU features llama.cpp's CPU backend was built with (its
system info), the CPU's own flags (``/proc/cpuinfo``), whether a GPU backend is present, and the
lossless weight type (``--quant auto``) that follows from them.

BF16 and F16 keep the same 16 bits per weight and both embed within about 3e-5 of cosine of
fp32 (all-MiniLM-L6-v2); which is faster depends on the matrix-product kernels: with AVX512-BF16
llama.cpp's CPU backend multiplies BF16 weights by BF16 activations natively (``vdpbf16ps``,
twice the multiply-adds of an F32 FMA, no conversion); without it BF16 is widened in software and
F16 wins; GPU backends are built around F16. How much BF16 gains depends on how much of the time
the matrix products take (docs/explanations/fastest-lossless-type.md).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache

from .. import choices
from . import llama

__all__ = ["LosslessChoice", "lossless_type", "cpu_flags", "llama_cpu_features", "cpu_has_bf16_dot",
           "BF16_FEATURE", "BF16_FLAG", "resolve_quant", "parse_system_info"]

BF16_FEATURE = "AVX512_BF16"  # as llama.cpp's CPU backend names it in its system info
BF16_FLAG = "avx512_bf16"  # as Linux names it in /proc/cpuinfo


@dataclass(frozen=True)
class LosslessChoice:
    """The 16-bit weight type ``--quant auto`` picks, and why (one line for plan and inspect)."""

    quant: str  # "BF16" or "F16"
    reason: str


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it is missing: not Linux)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return frozenset(next((ln for ln in fh if ln.startswith("flags")), "").partition(":")[2].split())
    except OSError:  # pragma: no cover - not Linux
        return frozenset()


def parse_system_info(text: str) -> dict[str, bool] | None:
    """llama.cpp's ``llama_print_system_info`` ("CPU : SSE3 = 1 | AVX2 = 1 | ... |") -> {feature: on}
    for the CPU backend; None when it has no CPU section."""
    for section in text.split("\n"):
        name, sep, rest = section.partition(" : ")
        if not sep or name.strip() != "CPU":
            continue
        out = {}
        for item in rest.split("|"):
            key, eq, value = item.partition("=")
            if eq:
                out[key.strip()] = value.strip() not in ("0", "")
        return out
    return None


@lru_cache(maxsize=1)
def llama_cpu_features() -> dict[str, bool] | None:
    """The features llama.cpp's CPU backend was built with and uses here (None if it says nothing)."""

    return parse_system_info(llama.system_info())


def cpu_has_bf16_dot() -> tuple[bool, str]:
    """(whether llama.cpp multiplies BF16 natively on this CPU, where that was read). llama.cpp's
    own report first: a CPU with the instructions runs them only if the backend was built with them.
    Its report is what the build was compiled for, so the CPU's flags must agree where Linux lists them."""
    feats = llama_cpu_features()
    machine = platform.machine().lower()
    flags = cpu_flags() if machine in ("x86_64", "amd64") else frozenset()
    if feats:
        if feats.get(BF16_FEATURE) and flags and BF16_FLAG not in flags:
            return False, "this CPU (/proc/cpuinfo; llama.cpp was built for AVX512-BF16, the CPU lacks it)"
        return bool(feats.get(BF16_FEATURE)), "llama.cpp's CPU backend"
    if machine not in ("x86_64", "amd64"):
        return False, f"{machine} CPU"
    return BF16_FLAG in flags, "/proc/cpuinfo"


def lossless_type(gpu: bool | None = None) -> LosslessChoice:
    """BF16 where llama.cpp's CPU backend has AVX512-BF16 and no GPU backend is present, else F16.
    ``gpu``: whether the model will run on a GPU (default: whether llama.cpp can offload)."""
    if gpu is None:
        gpu = llama.supports_gpu_offload()
    if gpu:
        return LosslessChoice("F16", "F16: a GPU backend is present, and GPU kernels are built around F16")
    has, where = cpu_has_bf16_dot()
    if has:
        return LosslessChoice("BF16", f"BF16: {where} has AVX512-BF16 (native BF16 dot products)")
    return LosslessChoice("F16", f"F16: {where} has no AVX512-BF16 (BF16 would be widened in software, slower)")


def resolve_quant(quant: str, *, gpu: bool | None = None) -> tuple[str, str | None]:
    """(the type to write, why) for a quantisation name: "auto" becomes this machine's lossless
    type with the reason; any other name is itself, with no reason."""
    q = quant.upper()
    if q != choices.AUTO_QUANT:
        return q, None
    choice = lossless_type(gpu)
    return choice.quant, choice.reason

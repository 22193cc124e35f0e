"""What this machine and this llama.cpp build can do, in one report (``gguf-embed doctor``): the
versions, the backends llama.cpp loaded and the devices it sees (with their free and total memory),
the CPU features it was built with and uses, the ``--quant auto`` type and the default settings here,
and, for a model, the plan on the first GPU (fitted to its free memory) or on the CPU."""

from __future__ import annotations

import platform
from importlib import metadata

from . import ggml, llama
from .machine import cpu_flags, lossless_type, llama_cpu_features
from .planning import BudgetError, estimate, fit_budget, resolve_for_plan
from .settings import DEFAULT_BATCH_TOKENS, default_threads

__all__ = ["system_report", "model_plan"]

GPU_TYPES = ("gpu", "igpu")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def system_report() -> dict:
    """The machine and the llama.cpp build, as plain data (``doctor --json`` prints it as it is)."""
    devices = ggml.device_list()
    features = llama_cpu_features() or {}
    auto = lossless_type()
    threads = default_threads()
    return {
        "versions": {"gguf-embed": _version("gguf-embed"), "llama-cpp-python": _version("llama-cpp-python")},
        "backends": ggml.backend_names(),
        "gpu_offload": llama.supports_gpu_offload(),
        "devices": devices,
        "cpu": {"name": _cpu_name(), "machine": platform.machine(), "threads": threads,
                "llama_cpp_features": sorted(k for k, v in features.items() if v),
                "bf16_flag": "avx512_bf16" in cpu_flags()},
        "quant_auto": {"type": auto.quant, "reason": auto.reason},
        "defaults": {"threads": threads, "serve_threads": max(1, threads - 1), "batch_tokens": DEFAULT_BATCH_TOKENS},
    }


def model_plan(model: str, devices: list[dict], models_dir=None) -> dict:
    """The plan ``encode`` would run ``model`` with here: fitted to the first GPU's free memory when there
    is one (``--vram`` of that size), else everything on the CPU."""
    shape, path, label = resolve_for_plan(model, None, models_dir)
    gpu = next((d for d in devices if d["type"] in GPU_TYPES), None)
    out = {"model": label, "path": str(path) if path else None, "device": gpu["name"] if gpu else "CPU"}
    p = None
    if gpu is not None:
        try:
            p = fit_budget(shape, gpu["free_bytes"])
        except BudgetError as exc:
            out["note"] = exc.message
    if p is None:
        p = estimate(shape, n_gpu_layers=0)
    return {**out, **p.settings(), "placement": p.placement, "fast_path": p.fast_path,
            "gpu_bytes": p.device_total("GPU"), "cpu_bytes": p.device_total("CPU"), "notes": list(p.notes)}

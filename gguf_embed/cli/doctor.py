"""``gguf-embed doctor``: this machine and its llama.cpp build on one screen, for a bug report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import user_errors

__all__ = ["doctor_cmd"]

NO_GPU = ("no GPU device: this llama-cpp-python is a CPU build (or no driver sees a GPU); "
          "see docs/guides/gpu.md for the CUDA, Vulkan and Metal builds")


def _no_device(backends: list[str]) -> str:
    hint = (" Mesa's software Vulkan (lavapipe) is used only when named: GGML_VK_VISIBLE_DEVICES=0."
            if "Vulkan" in backends else "")
    return (f"no GPU device: llama.cpp has the {', '.join(backends)} backend, but no driver shows it a GPU: "
            f"is the GPU's driver installed?{hint}")


def _gib(b: int) -> str:
    return f"{b / 2**30:.1f} GiB"


def _print(report: dict, plan: dict | None) -> None:
    v = report["versions"]
    click.echo(f"gguf-embed {v['gguf-embed']}, llama-cpp-python {v['llama-cpp-python']}")
    click.echo(f"llama.cpp backends: {', '.join(report['backends']) or 'none'}; "
               f"GPU offload: {'yes' if report['gpu_offload'] else 'no'}")
    cpu = report["cpu"]
    click.echo(f"CPU: {cpu['name']} ({cpu['machine']}, {cpu['threads']} threads); llama.cpp uses "
               f"{' '.join(cpu['llama_cpp_features']) or 'no reported features'}")
    click.echo("devices:")
    for d in report["devices"]:
        click.echo(f"  {d['name']:<10} {d['type']:<5} {d['description']}: {_gib(d['free_bytes'])} free of "
                   f"{_gib(d['total_bytes'])}")
    if not any(d["type"] in ("gpu", "igpu") for d in report["devices"]):
        gpu_backends = [b for b in report["backends"] if b not in ("CPU", "BLAS", "RPC")]
        click.echo(f"  {_no_device(gpu_backends) if gpu_backends else NO_GPU}")
    click.echo(f"--quant auto here: {report['quant_auto']['reason']}")
    d = report["defaults"]
    click.echo(f"defaults here: {d['threads']} threads ({d['serve_threads']} for serve), "
               f"batch {d['batch_tokens']} tokens")
    if plan is not None:
        click.echo(f"plan for {plan['model']} on {plan['device']}: {plan['placement']}, context {plan['n_ctx']}, "
                   f"batch {plan['batch_tokens']}, KV {plan['kv_type']}, flash attention {plan['flash_attn']}; "
                   f"GPU {_gib(plan['gpu_bytes'])}, host {_gib(plan['cpu_bytes'])}")
        for note in [plan.get("note"), *plan["notes"]]:
            if note:
                click.echo(f"  note: {note}")


@click.command("doctor")
@click.option("-m", "--model", help="Also plan this model (as -m takes it) on this machine's first GPU, or its CPU.")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor_cmd(model, models_dir, as_json):
    """The llama.cpp build's backends, the devices it sees with their memory, the CPU features it uses,
    what --quant auto and the defaults pick here, and (with -m) the plan for a model."""
    from ..engine.system import model_plan, system_report

    with user_errors():
        report = system_report()
        plan = model_plan(model, report["devices"], models_dir) if model else None
    if as_json:
        return click.echo(json.dumps({**report, "plan": plan}, indent=2))
    _print(report, plan)

"""``gguf-embed plan``: the memory a model needs per device, and the settings that fit a VRAM budget."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .. import choices, keys
from ..errors import GGUFEmbedError
from .common import flag_words

__all__ = ["plan_cmd", "plan_table"]
GPU_NOTE = ("GPU figures count llama.cpp's own buffers; the GPU runtime (CUDA context, cuBLAS/ggml pools) "
            "takes a few hundred MiB more of the card, outside this plan.")


def _mib(b: int) -> str:
    return f"{b / 2**20:,.1f}"


def plan_table(p, measured: dict | None = None) -> Table:
    """Weights, KV cache, compute and outputs per device (MiB); with ``measured`` (llama.cpp's report
    for the same settings on this machine, by "kind:device" as ``session.device_buffers`` gives it)
    a column per device beside the plan."""
    devices = ["CPU"] + (["GPU"] if p.n_gpu_layers else [])
    table = Table()
    table.add_column("MiB")
    for d in devices:
        table.add_column(d, justify="right")
    shown = devices if measured is not None else []
    for d in shown:
        table.add_column(f"llama.cpp reports ({d})", justify="right")

    def reported(kind: str) -> list[str]:
        return [_mib(measured.get(f"{kind}:{d}", 0)) for d in shown]

    start = [p.device_total(d) - (p.output - p.output_at_start if d == "CPU" else 0) for d in devices]
    table.add_row("weights", *[_mib(p.weights.get(d, 0)) for d in devices], *reported("model"))
    table.add_row("KV cache", *[_mib(p.kv.get(d, 0)) for d in devices], *reported("kv"))
    table.add_row("compute", *[_mib(p.compute.get(d, 0)) for d in devices], *reported("compute"))
    table.add_row("outputs", *[_mib(p.output_at_start if d == "CPU" else 0) for d in devices], *reported("output"))
    totals = [_mib(sum(v for k, v in measured.items() if k.endswith(":" + d))) for d in shown]
    table.add_row("total at start", *map(_mib, start), *totals, style="bold")
    blank = [""] * len(shown)
    table.add_row("outputs, full batch", *[_mib(p.output if d == "CPU" else 0) for d in devices], *blank)
    table.add_row("total, full batch", *[_mib(p.device_total(d)) for d in devices], *blank, style="bold")
    return table


def _size(b: int) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:,.0f} MiB"


def _settings_line(p) -> str:
    path = "last-token fast path (no LM head)" if p.fast_path else "all-token path"
    return (f"context {p.n_ctx}, batch {p.batch_tokens} tokens, KV cache {p.kv_type}, "
            f"flash attention {p.flash_attn}, {p.placement}, {path}")


def _choice_line(model: str, quant: str | None, shape, path, p) -> str:
    """One line on what was chosen and why: the weight type (--quant auto's reasoning) and the batch."""
    from ..engine.machine import lossless_type, resolve_quant
    from ..engine.settings import batch_reason
    from ..registry import load_registry

    if path is not None:
        auto = lossless_type()  # what convert --quant auto writes on this machine
        recorded = _recorded_choice(path)
        q = shape.info.file_type_name or "?"
        weights = f"weights {q} (the file's; {recorded or 'asked for by name'}); --quant auto here: {auto.reason}"
    else:
        entry = load_registry().models.get(model)
        asked = (quant or (entry.default_quant if entry else "")).upper()
        q, why = resolve_quant(asked)
        weights = f"weights {q} ({'--quant auto: ' + why if why else 'asked for' if quant else 'models.toml default'})"
    return f"{weights}; batch {p.batch_tokens} tokens ({batch_reason(shape.info, p.batch_tokens)})"


def _recorded_choice(path) -> str | None:
    from ..model.gguf_file import read_gguf

    value = read_gguf(path).meta.get(keys.QUANT_CHOICE)
    return str(value) if value else None


def _check(model, quant, name, shape, path, p, console):
    """Create the context on this machine and read llama.cpp's buffers: with ``p``'s settings where
    this build offloads to a GPU, else ``p``'s settings on the CPU. Returns (the plan checked, the report)."""
    from ..engine import llama, planning
    from ..engine.session import device_buffers, measure_buffers
    from ..engine.settings import RuntimeSettings

    if path is None:
        raise GGUFEmbedError(f"--check needs the converted file; run: gguf-embed convert {model}"
                             + (f" --quant {quant}" if quant else ""))
    on_gpu = bool(p.n_gpu_layers) and llama.supports_gpu_offload()
    checked = p if on_gpu else planning.estimate(shape, **{**p.settings(), "n_gpu_layers": 0})
    m = measure_buffers(path, RuntimeSettings.of(**checked.settings()))
    measured = device_buffers(m["reported"])
    if console is not None:
        total, planned = sum(measured.values()), checked.total_at_start
        where = "GPU and host" if on_gpu else "CPU"
        console.print(f"[bold]{name}[/] on this machine's {where}: {_settings_line(checked)}")
        console.print(plan_table(checked, measured))
        console.print(f"llama.cpp allocated {_mib(total)} MiB at context creation; the plan says "
                      f"{_mib(planned)} MiB ({(planned - total) / total:+.1%}), "
                      f"{_mib(checked.total)} MiB once a full batch has run; the process grew "
                      f"{_mib(m['rss_growth'])} MiB resident over loading and one full batch")
    return checked, measured


def _print_fit(vram: str, budget: int, p) -> None:
    click.echo(f"fits {vram}: {_size(p.device_total('GPU'))} of {_size(budget)} on the GPU with {_settings_line(p)}")
    for note in p.notes:
        click.echo(f"note: {note}")
    click.echo(f"use: --vram {vram}  (or --n-gpu-layers {p.n_gpu_layers} --batch-tokens {p.batch_tokens} "
               f"--kv-type {p.kv_type} --flash-attn {p.flash_attn} --ctx {p.n_ctx})")


def _json_plan(p, fits: bool, budget: int | None, checked=None, measured: dict | None = None) -> dict:
    out = {"fits": fits, "n_gpu_layers": p.n_gpu_layers, "batch_tokens": p.batch_tokens, "kv_type": p.kv_type,
           "ctx": p.n_ctx, "flash_attn": p.flash_attn, "fast_path": p.fast_path, "gpu_bytes": p.device_total("GPU"),
           "cpu_bytes": p.device_total("CPU"), "budget_bytes": budget, "notes": list(p.notes)}
    if measured is not None:  # --check: the plan that was checked (p, or p on the CPU) against llama.cpp's buffers
        planned = checked.buffers_at_start()
        out.update(planned_bytes=checked.total_at_start, measured_bytes=sum(measured.values()),
                   checked_n_gpu_layers=checked.n_gpu_layers,
                   buffers={k: {"planned": planned.get(k, 0), "measured": measured.get(k, 0)}
                            for k in sorted(set(planned) | set(measured))})
    return out


@click.command("plan")
@click.argument("model")
@click.option("--quant", "-q", type=click.Choice(choices.QUANT_CHOICES, case_sensitive=False),
              help="Plan a models.toml model at this quantisation from its shape, without the file.")
@click.option("--vram", help="GPU memory budget (3GB, 2.5GiB, 800MB; GB = GiB): find the settings that fit it.")
@click.option("--ctx", "n_ctx", type=click.IntRange(min=16), help="Context size (decoder models; default min(limit, 8192)).")
@click.option("--batch-tokens", "batch_tokens", type=click.IntRange(min=16), help="Tokens per llama.cpp batch (default 512).")
@click.option("--batch-size", "batch_tokens", type=click.IntRange(min=16), hidden=True)  # encode's old name
@click.option("--n-gpu-layers", type=int, default=0, show_default=True,
              help="Layers on the GPU without --vram (-1: all; 1: the output layer only).")
@click.option("--kv-type", type=click.Choice(choices.KV_TYPES), help="KV-cache type (default as encode: f16; f32 for rerankers).")
@click.option("--flash-attn", type=click.Choice(choices.FLASH_ATTN_MODES), help="Flash attention (default as encode).")
@click.option("--check", is_flag=True, help="Also create the context on this machine and show llama.cpp's own report.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live.")
def plan_cmd(model, quant, vram, n_ctx, batch_tokens, n_gpu_layers, kv_type, flash_attn, check, as_json, models_dir):
    """Memory MODEL needs per device (weights, KV cache, compute, outputs), and what fits a VRAM budget.

    MODEL is as -m takes it (a path, a models.toml name, hf:..., ollama:...); a name that is not pulled
    or converted yet (or with --quant) is planned from its models.toml shape, without downloading anything."""
    from ..engine import planning

    console = Console(width=120, stderr=as_json)
    try:
        shape, path, name = planning.resolve_for_plan(model, quant, models_dir)
        budget = planning.parse_size(vram) if vram else None
        if budget is not None:
            try:
                p = planning.fit_budget(shape, budget, n_ctx=n_ctx, batch_tokens=batch_tokens)
            except planning.BudgetError:
                full = planning.estimate(shape, n_ctx=n_ctx, batch_tokens=batch_tokens, n_gpu_layers=-1,
                                         flash_attn="on")
                if as_json:
                    click.echo(json.dumps(_json_plan(full, False, budget)))
                else:
                    console.print(f"[bold]{name}[/]: every layer on the GPU, {_settings_line(full)}")
                    console.print(plan_table(full))
                raise
        else:
            p = planning.estimate(shape, n_ctx=n_ctx, batch_tokens=batch_tokens, n_gpu_layers=n_gpu_layers,
                                  kv_type=kv_type, flash_attn=flash_attn)
        checked = measured = None  # with --check: the plan checked, and llama.cpp's own report by device
        if check:
            checked, measured = _check(model, quant, name, shape, path, p, console if not as_json else None)
        chosen = _choice_line(model, quant, shape, path, p)
        if as_json:
            return click.echo(json.dumps({**_json_plan(p, True, budget, checked, measured), "chosen": chosen}))
        if checked is not p:
            console.print(f"[bold]{name}[/]: {_settings_line(p)}")
            console.print(plan_table(p))
        click.echo(chosen)
        if vram:
            _print_fit(vram, budget, p)
        else:
            for note in p.notes:
                click.echo(f"note: {note}")
        if p.n_gpu_layers:
            click.echo(GPU_NOTE)
    except GGUFEmbedError as exc:
        raise click.ClickException(flag_words(exc.message)) from None

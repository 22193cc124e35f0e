"""``gguf-embed inspect MODEL``: what gguf-embed will do with a GGUF, and where each value came from."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .. import choices
from .common import user_errors

__all__ = ["inspect_cmd"]

MIX_NOTES = {"embedding": "embedding (token embeddings at the layers' type; attn_v and ffn_down with more bits in "
                          "every layer)",
             "llama": "llama (llama.cpp's own mixture)"}


def _rows(d: dict):
    yield "file", d["path"], ""
    yield "architecture", f"{d['architecture']} ({'decoder' if d['causal'] else 'encoder'}, {d['layers']} layers)", ""
    yield "family", d["family"] or "-", "models.toml families" if d["family"] else "not recognised: what the file says"
    for key in ("task", "pooling", "text_normalizer"):
        yield key.replace("_", " "), str(d[key]["value"]), d[key]["source"] or ""
    prompts = d["prompts"]["value"]
    for name in choices.INPUT_TYPES if d["task"]["value"] == "embed" else ():
        yield f"{name} prompt", repr(prompts[name]) if name in prompts else "-", d["prompts"]["source"] or ""
    if d["eos"]:
        yield "end of every input", f"{d['eos']['token']}: {d['eos']['note']}", d["eos"]["source"] or ""
    if d["rerank_template"]:
        t = d["rerank_template"]
        yield "rerank pair", repr(t["body"]), t["source"] or ""
        yield "default instruction", repr(t["default_instruction"]), ""
    if d["head"]:
        h = d["head"]
        yield "rerank head", f"{h['rows']} rows{' + pooler' if h['pooler'] else ''}, labels {h['labels']}: {h['score']}", "file"
    m = d["max_tokens"]
    yield "token limit", f"{m['value']} (trained context {m['trained_context']})", m["source"] or ""
    dims = d["dimensions"]
    yield "dimensions", f"{dims['value']}" + (f", Matryoshka {dims['matryoshka'][0]}..{dims['matryoshka'][1]}"
                                              if dims["matryoshka"] else ""), dims["source"] or ""
    if d["task"]["value"] == "embed":
        yield "outputs", ", ".join(d["outputs"]), "file" if len(d["outputs"]) > 2 else "every model"
    yield "quantisation", d["quantization"] or "-", d.get("quant_choice") or "file"
    if d.get("quant_mix"):
        yield "tensor mix", MIX_NOTES.get(d["quant_mix"], d["quant_mix"]), "file"
    im = d.get("importance_matrix")
    if im:
        yield "importance weights", f"{im['dataset'] or im['file']} ({im['entries']} matrices, {im['chunks']} texts)", "file"


def _logits_line(r: dict) -> str:
    size = f"{r['bytes'] / 2**20:,.1f} MiB of logits ({r['rows']} rows)"
    if r["fast_path"]:
        return f"llama.cpp's output buffer here: {size}, one row per sequence (the last-token fast path)"
    if r["stock_build"]:
        return (f"llama.cpp's output buffer here: up to {size} that nothing reads, per context, once an input "
                f"fills a batch (a stock llama.cpp reserves them for every output; make install's build does not)")
    return "llama.cpp's output buffer here: no logits (this build reserves none for embedding contexts)"


@click.command("inspect")
@click.argument("model")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live.")
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
def inspect_cmd(model, models_dir, as_json):
    """What gguf-embed does with MODEL (a .gguf or a models.toml name): family, task, pooling, prompts,
    normaliser, end-of-input token, rerank template and head, limits, and which of these it supplies."""
    from ..engine.machine import lossless_type
    from ..engine.planning import logits_reserved, read_shape
    from ..model.info import read_info, resolve_model
    from ..model.inspect import describe

    with user_errors():
        gguf, info = read_info(resolve_model(model, models_dir=models_dir))
        report = describe(gguf, info)
        auto = lossless_type()
        report["lossless_here"] = {"quant": auto.quant, "reason": auto.reason}
        report["logits_reserved"] = logits_reserved(read_shape(gguf))
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    table = Table(title=f"{report['name']}", show_lines=False)
    for col in ("", "value", "from"):
        table.add_column(col)
    for row in _rows(report):
        table.add_row(*row)
    Console(width=160).print(table)
    click.echo(f"--quant auto on this machine: {auto.reason}")
    click.echo(_logits_line(report["logits_reserved"]))
    for note in report["warnings"]:
        click.echo(f"warning: {note}")
    supplied = report["supplied_by_gguf_embed"]
    if supplied:
        click.echo(f"supplied by gguf-embed (the file lacks them): {', '.join(supplied)}")

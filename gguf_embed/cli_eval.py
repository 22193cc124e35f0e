"""``gguf-embed eval``: what a GGUF's quantisation costs, against a reference and on a human benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from . import evaluate, multilingual
from .cli_common import make_embedder, runtime_options, stderr, user_errors

__all__ = ["eval_cmd"]


def _gguf_encoder(emb, input_type):
    return lambda texts: emb.embed(list(texts), input_type=input_type, truncate="end").embeddings


def _print(report: dict) -> None:
    console = Console(width=160)
    table = Table(title=report["model"])
    for col in ("check", "texts", "cos min", "cos p1", "cos mean", "Spearman", "Pearson"):
        table.add_column(col, justify="left" if col == "check" else "right")
    f = lambda x: f"{x:.4f}"  # noqa: E731
    if "reference" in report:
        a = report["reference"]
        table.add_row("vs reference", str(a["n_texts"]), f(a["cos_min"]), f(a["cos_p1"]), f(a["cos_mean"]),
                      f(a["spearman"]), "")
        table.caption = f"reference: {a['path']}; texts: {report['texts']}"
    for key, label in (("lee", "Lee 2005: this model"), ("reference_lee", "Lee 2005: reference")):
        if key in report:
            r = report[key]
            table.add_row(label, str(r["documents"]), "", "", "", f(r["spearman"]), f(r["pearson"]))
    console.print(table)


@click.command("eval")
@click.argument("model")
@click.option("--reference", help="A Hugging Face folder (via sentence-transformers) or a higher-precision GGUF.")
@click.option("--texts", "texts_file", type=click.Path(dir_okay=False, path_type=Path),
              help="One text per line (default: the built-in multilingual set).")
@click.option("--task", type=click.Choice(["lee"]), help="A human-rated benchmark: lee = Lee et al. (2005), 50 documents.")
@click.option("--input-type", type=click.Choice(["query", "document"]), help="The prompt to apply (default: the document one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@runtime_options
def eval_cmd(model, reference, texts_file, task, input_type, as_json, models_dir, batch_size, n_ctx, threads,
             n_gpu_layers, flash_attn, kv_type, vram, verbose):
    """Quality of MODEL: cosine and rank agreement with --reference, and/or a benchmark (--task lee)."""
    if reference is None and task is None:
        raise click.UsageError("give --reference and/or --task lee")
    with user_errors():
        emb = make_embedder(model, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type, verbose, vram)
        report: dict = {"model": str(emb.info.path)}
        encode = _gguf_encoder(emb, input_type)
        ref_encode, ref_emb = None, None
        if reference is not None:
            if Path(reference).expanduser().is_dir():
                ref_encode = evaluate.st_encoder(Path(reference).expanduser(), emb.prompt_for(input_type, None))
            else:
                ref_emb = make_embedder(reference, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn,
                                        kv_type, verbose, None)
                ref_encode = _gguf_encoder(ref_emb, input_type)
            texts = evaluate.read_texts_file(texts_file) if texts_file else multilingual.texts()
            report["texts"] = str(texts_file) if texts_file else "built-in multilingual set"
            stderr.print(f"[dim]embedding {len(texts)} texts with both models")
            agreement = evaluate.compare(encode(texts), ref_encode(texts))
            report["reference"] = {"path": reference, **agreement.to_dict()}
        if task == "lee":
            report["lee"] = evaluate.lee_benchmark(encode).to_dict()
            if ref_encode is not None:
                report["reference_lee"] = evaluate.lee_benchmark(ref_encode).to_dict()
        emb.close()
        if ref_emb is not None:
            ref_emb.close()
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print(report)

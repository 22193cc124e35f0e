"""``gguf-embed eval``: what a GGUF's quantisation costs, against a reference and on a human benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .. import choices
from ..quality import evaluate
from .common import open_model, runtime_options, stderr, user_errors

__all__ = ["eval_cmd"]


def _print(report: dict) -> None:
    console = Console(width=160)
    im = report.get("importance_matrix")
    title = f"{report['model']} ({report.get('quantization') or '?'}"
    title += f", {report['tensor_mix']} mix" if report.get("tensor_mix") else ""
    title += f", importance-weighted on {im['dataset'] or im['file']})" if im else ")"
    table = Table(title=title)
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
@click.option("--input-type", type=click.Choice(choices.INPUT_TYPES), help="The prompt to apply (default: the document one).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@runtime_options
def eval_cmd(model, reference, texts_file, task, input_type, as_json, settings):
    """Quality of MODEL (as -m takes it: a path, a models.toml name, hf:..., ollama:...): cosine and rank
    agreement with --reference, and/or a benchmark (--task lee)."""
    if reference is None and task is None:
        raise click.UsageError("give --reference and/or --task lee")
    with user_errors(), open_model(model, settings) as emb:
        report = evaluate.report(emb, reference=reference, texts_file=texts_file, task=task, input_type=input_type,
                                 open_reference=lambda ref: open_model(ref, settings.with_(vram=None)),
                                 say=lambda line: stderr.print(f"[dim]{line}"))
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print(report)

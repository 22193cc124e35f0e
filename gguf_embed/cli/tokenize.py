"""``gguf-embed tokenize``: the exact token ids a model is fed, one row per input line."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from .. import choices
from .common import open_model, read_texts, runtime_options, user_errors

__all__ = ["tokenize_cmd"]

TABLE_IDS = 24  # ids shown per row in the table format


@click.command("tokenize")
@click.argument("files", nargs=-1, required=True)
@click.option("-m", "--model", required=True, help="The model: a .gguf path, a pulled or converted models.toml name, hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO:QUANT or ollama:NAME[:TAG].")
@runtime_options
@click.option("--format", "fmt", type=click.Choice(choices.LISTING_FORMATS), default="jsonl", show_default=True)
@click.option("--input-type", type=click.Choice(choices.INPUT_TYPES), help="Apply the model's query or document prompt.")
@click.option("--instruction", help="Task instruction for queries (Qwen3: 'Instruct: {task}\\nQuery:{text}').")
@click.option("--truncate", type=click.Choice(choices.TRUNCATE_POLICIES), default="error", show_default=True)
def tokenize_cmd(files, model, settings, fmt, input_type, instruction, truncate):
    """Token ids for each non-empty line of FILE(s) ('-' for stdin), after prompt, normalisation and special tokens.

    jsonl rows are {"index": i, "ids": [...], "count": n}.
    """
    texts = read_texts(files)
    if not texts:
        raise click.ClickException(f"no text to tokenize in {', '.join(files)}")
    with user_errors():
        with open_model(model, settings) as emb:
            seqs = emb.tokenize(texts, input_type=input_type, instruction=instruction, truncate=truncate)
    if fmt == "jsonl":
        for i, ids in enumerate(seqs):
            click.echo(json.dumps({"index": i, "ids": [int(t) for t in ids], "count": len(ids)}))
        return
    table = Table(title=f"{len(seqs)} inputs, {sum(len(s) for s in seqs)} tokens")
    for col, justify in (("index", "right"), ("count", "right"), ("ids", "left")):
        table.add_column(col, justify=justify)
    for i, ids in enumerate(seqs):
        shown = " ".join(str(int(t)) for t in ids[:TABLE_IDS]) + (" ..." if len(ids) > TABLE_IDS else "")
        table.add_row(str(i), str(len(ids)), shown)
    Console(width=160).print(table)

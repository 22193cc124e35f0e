"""``gguf-embed rerank QUERY FILE -m MODEL``: documents in, ranked documents out."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from .. import choices
from .common import open_model, read_texts, runtime_options, user_errors

__all__ = ["rerank_cmd"]


@click.command("rerank")
@click.argument("query")
@click.argument("file")
@click.option("-m", "--model", required=True, help="A reranker: a .gguf path, a pulled or converted models.toml name, hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO:QUANT or ollama:NAME[:TAG].")
@runtime_options
@click.option("--top-n", type=click.IntRange(min=1), help="Show only the N best documents.")
@click.option("--instruction", help="Task instruction (Qwen3-Reranker; default: web search).")
@click.option("--raw-scores", is_flag=True, help="Logits (l_yes - l_no for Qwen3) instead of probabilities.")
@click.option("--format", "fmt", type=click.Choice(choices.LISTING_FORMATS), help="Output (default: table on a terminal, else jsonl).")
@click.option("--text-field", help="Field holding the text in a .jsonl FILE (default: text).")
@click.option("--truncate", type=click.Choice(choices.TRUNCATE_POLICIES), default="end", show_default=True,
              help="Over-long documents: cut their end or start, or refuse.")
def rerank_cmd(query, file, model, settings, top_n, instruction, raw_scores, fmt, text_field, truncate):
    """Rank the documents in FILE (one per line, '-' for stdin, or .jsonl) by relevance to QUERY."""
    from ..corpus.readers import read_documents
    from ..reranker import Reranker

    with user_errors():
        docs = (read_documents(file, text_field or "text") if file.endswith(".jsonl") or text_field
                else read_texts((file,)))
        with open_model(model, settings, Reranker) as reranker:
            ranked = reranker.rerank(query, docs, top_n, instruction, truncate=truncate, raw_scores=raw_scores)
    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt == "jsonl":
        for i, score in ranked:
            click.echo(json.dumps({"index": i, "score": score, "text": docs[i]}, ensure_ascii=False))
        return
    table = Table(title=f"{len(ranked)} of {len(docs)} documents for {query!r}")
    for col, kw in (("rank", {"justify": "right"}), ("score", {"justify": "right"}), ("index", {"justify": "right"}), ("text", {})):
        table.add_column(col, **kw)
    for rank, (i, score) in enumerate(ranked, 1):
        text = docs[i] if len(docs[i]) <= 120 else docs[i][:117] + "..."
        table.add_row(str(rank), f"{score:.4f}", str(i), text)
    Console(width=200).print(table)


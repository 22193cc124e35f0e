"""``gguf-embed search QUERY --index OUT.parquet``: the nearest rows of an encoded corpus, optionally reranked."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack

import click
from rich.console import Console
from rich.table import Table

from .. import choices
from .common import open_model, read_texts, runtime_options, user_errors

__all__ = ["search_cmd"]

TEXT_WIDTH = 100


def _queries(query, queries_file) -> list[str]:
    if (query is None) == (queries_file is None):
        raise click.UsageError("give a QUERY or --queries FILE (one query per line), not both")
    return [query] if query is not None else read_texts((queries_file,))


def _print_table(queries: list[str], blocks, reranked: bool) -> None:
    console = Console(width=200)
    for query, hits in zip(queries, blocks):
        table = Table(title=f"{len(hits)} results for {query!r}")
        cols = ["rank", "score"] + (["similarity"] if reranked else []) + ["id"]
        chunked = any(h.chunk is not None for h in hits)
        cols += (["chunk", "span"] if chunked else []) + (["text"] if any(h.text for h in hits) else [])
        for col in cols:
            table.add_column(col, justify="right" if col in ("rank", "score", "similarity", "chunk") else "left")
        for h in hits:
            row = [str(h.rank), f"{h.score:.4f}"] + ([f"{h.similarity:.4f}"] if reranked else []) + [h.id]
            row += [str(h.chunk), f"{h.start}-{h.end}"] if chunked else []
            if "text" in cols:
                text = (h.text or "").replace("\n", " ")
                row.append(text if len(text) <= TEXT_WIDTH else text[:TEXT_WIDTH - 3] + "...")
            table.add_row(*row)
        console.print(table)


@click.command("search")
@click.argument("query", required=False)
@click.option("--index", "index_path", required=True, help="A Parquet written by gguf-embed encode -o OUT.parquet (with its manifest).")
@click.option("-m", "--model", help="The embedding model (default: the one the index's manifest names, found in the models dir).")
@runtime_options
@click.option("--top-k", type=click.IntRange(min=1), default=10, show_default=True, help="Nearest rows to return (to rerank, with --rerank).")
@click.option("--rerank", "reranker_model", help="Rescore the top-k with this reranker (texts from the index or its corpus).")
@click.option("--top-n", type=click.IntRange(min=1), help="With --rerank: show only the N best (default: all top-k).")
@click.option("--format", "fmt", type=click.Choice(choices.LISTING_FORMATS), help="Output (default: table on a terminal, else jsonl).")
@click.option("--queries", "queries_file", help="A file of queries, one per line ('-' for stdin): one result block each.")
@click.option("--instruction", help="Task instruction for the query (as in encode; Qwen3: 'Instruct: {task}\\nQuery:{text}').")
@click.option("--rerank-instruction", help="Task instruction for a Qwen3 reranker (default: web search).")
@click.option("--faiss", "use_faiss", is_flag=True, help="Approximate search through a FAISS index next to the Parquet (built on first use).")
@click.option("--faiss-index", "faiss_kind", type=click.Choice(choices.FAISS_INDEXES), default="hnsw", show_default=True,
              help="With --faiss: the FAISS index kind.")
@click.option("--faiss-probe", type=click.IntRange(min=1), help="With --faiss: efSearch (hnsw) or nprobe (ivf); more is slower and finds more.")
@click.option("--rescore", type=click.IntRange(min=1), help="Binary indexes: rescore the N x top-k nearest by Hamming distance with the float query (default 10).")
def search_cmd(query, index_path, model, settings, top_k, reranker_model, top_n, fmt, queries_file, instruction,
               rerank_instruction, use_faiss, faiss_kind, faiss_probe, rescore):
    """Find the rows of an encoded corpus nearest to QUERY (exact by default)."""
    from ..search import SearchIndex, index_model, search
    from ..reranker import Reranker

    queries = _queries(query, queries_file)
    if top_n is not None and reranker_model is None:
        raise click.UsageError("--top-n needs --rerank (without it, --top-k says how many)")
    with user_errors(), ExitStack() as stack:
        index = SearchIndex(index_path)
        emb = stack.enter_context(open_model(model or index_model(index, settings.models_dir), settings))
        reranker = stack.enter_context(open_model(reranker_model, settings, Reranker)) if reranker_model else None
        blocks = search(index, queries, emb, top_k, reranker, top_n, instruction=instruction,
                        rerank_instruction=rerank_instruction, faiss=faiss_kind if use_faiss else None,
                        probe=faiss_probe, rescore=rescore)
    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt == "table":
        _print_table(queries, blocks, reranker is not None)
        return
    many = queries_file is not None
    for qi, hits in enumerate(blocks):
        for h in hits:
            click.echo(json.dumps(h.to_json(qi if many else None), ensure_ascii=False))

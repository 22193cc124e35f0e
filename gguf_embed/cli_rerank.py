"""``gguf-embed rerank QUERY FILE -m MODEL``: documents in, ranked documents out.

``rerank_command`` builds the command from the CLI's shared pieces (runtime options, model
loading, text reading, error mapping), which ``cli`` passes in when it registers it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

__all__ = ["rerank_command", "read_jsonl_documents"]


def read_jsonl_documents(file: str, text_field: str | None) -> list[str]:
    """One JSON object per line (``text_field``, default ``text``); ``-`` for stdin."""
    field = text_field or "text"
    try:
        raw = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file} is not UTF-8 text (byte {exc.start})") from None
    docs = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise click.ClickException(f"{file}:{n}: not a JSON object") from None
        text = obj.get(field) if isinstance(obj, dict) else None
        if not isinstance(text, str):
            raise click.ClickException(f"{file}:{n}: no string field {field!r}")
        docs.append(text)
    return docs


def rerank_command(runtime_options, make_embedder, read_texts, user_errors) -> click.Command:
    @click.command("rerank")
    @click.argument("query")
    @click.argument("file")
    @click.option("-m", "--model", required=True, help="A reranker: a .gguf path or a converted models.toml name.")
    @runtime_options
    @click.option("--top-n", type=click.IntRange(min=1), help="Show only the N best documents.")
    @click.option("--instruction", help="Task instruction (Qwen3-Reranker; default: web search).")
    @click.option("--raw-scores", is_flag=True, help="Logits (l_yes - l_no for Qwen3) instead of probabilities.")
    @click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), help="Output (default: table on a terminal, else jsonl).")
    @click.option("--text-field", help="Field holding the text in a .jsonl FILE (default: text).")
    @click.option("--truncate", type=click.Choice(["end", "start", "error"]), default="end", show_default=True,
                  help="Over-long documents: cut their end or start, or refuse.")
    def rerank_cmd(query, file, model, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type, vram,
                   verbose, top_n, instruction, raw_scores, fmt, text_field, truncate):
        """Rank the documents in FILE (one per line, '-' for stdin, or .jsonl) by relevance to QUERY."""
        from .reranker import Reranker

        docs = (read_jsonl_documents(file, text_field) if file.endswith(".jsonl") or text_field
                else read_texts((file,)))
        with user_errors():
            emb = make_embedder(model, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type, verbose, vram)
            try:
                reranker = Reranker.from_embedder(emb)
                ranked = reranker.rerank(query, docs, top_n, instruction, truncate=truncate, raw_scores=raw_scores)
            finally:
                emb.close()
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

    return rerank_cmd

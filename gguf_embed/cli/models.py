"""``gguf-embed models``: the models gguf-embed knows by name, or (``--local``) the GGUFs already here."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..registry import default_models_dir, load_registry
from .common import user_errors


@click.command("models")
@click.option("--local", "local", is_flag=True,
              help="List the GGUFs on this machine: the models dir, LM Studio's folder, Ollama's store.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted and pulled GGUFs live.")
def models_cmd(local: bool, as_json: bool, models_dir: Path | None) -> None:
    """List the models gguf-embed knows by name (models.toml), or with --local the GGUFs already here."""
    folder = models_dir or default_models_dir()
    if local:
        _local(folder, as_json)
        return
    from ..model.sources import registry_files

    with user_errors():
        reg = load_registry()
    rows = [(e, [p.name for p in registry_files(e, folder)]) for e in reg]
    if as_json:
        click.echo(json.dumps([{"name": e.name, "hub_id": e.hub_id, "task": e.task, "architecture": e.architecture,
                                "pooling": e.pooling, "dims": e.dims, "max_tokens": e.max_tokens,
                                "default_quant": e.default_quant, "gguf_repo": e.gguf.repo if e.gguf else None,
                                "local": files} for e, files in rows], indent=2))
        return
    table = Table(title=f"models.toml ({len(reg.models)} models; files in {folder})")
    for col in ("name", "hub id", "arch", "pooling", "dims", "matryoshka", "max tokens", "quant", "licence",
                "ready GGUF", "here"):
        table.add_column(col)
    for e, files in rows:
        table.add_row(
            e.name + (" (default)" if e.name == reg.default else ""), e.hub_id, e.architecture, e.pooling,
            str(e.dims), f"{e.matryoshka_min}..{e.dims}" if e.matryoshka_min else "-", str(e.max_tokens),
            e.default_quant, e.license, e.gguf.repo if e.gguf else "- (convert)", ", ".join(files) or "-",
        )
    Console(width=240).print(table)


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _local(folder: Path, as_json: bool) -> None:
    from ..model.sources import list_local

    with user_errors():
        found = list_local(folder)
    if as_json:
        click.echo(json.dumps([m.as_dict() for m in found], indent=2))
        return
    table = Table(title=f"GGUFs here ({len(found)}): models dir {folder}, LM Studio, Ollama")
    for col in ("name (-m)", "task", "arch", "pooling", "quant", "size", "source", "path"):
        table.add_column(col, overflow="fold")
    for m in found:
        table.add_row(m.name, m.task or "-", m.arch or "?", m.pooling or "-", m.quant or "?", _size(m.size), m.source,
                      "" if m.name == str(m.path) else str(m.path))
    Console(width=240).print(table)

"""``gguf-embed models``: the models gguf-embed knows by name."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ..registry import default_models_dir, load_registry
from .common import user_errors


@click.command("models")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live.")
def models_cmd(models_dir: Path | None) -> None:
    """List the models gguf-embed knows by name."""
    with user_errors():
        reg = load_registry()
    folder = models_dir or default_models_dir()
    table = Table(title=f"models.toml ({len(reg.models)} models; converted files in {folder})")
    for col in ("name", "hub id", "arch", "pooling", "dims", "matryoshka", "max tokens", "quant", "licence", "converted"):
        table.add_column(col)
    for e in reg:
        converted = ", ".join(p.name for p in sorted(folder.glob(f"{e.name}-*.gguf"))) or "-"
        table.add_row(
            e.name + (" (default)" if e.name == reg.default else ""), e.hub_id, e.architecture, e.pooling,
            str(e.dims), f"{e.matryoshka_min}..{e.dims}" if e.matryoshka_min else "-", str(e.max_tokens),
            e.default_quant, e.license, converted,
        )
    Console(width=200).print(table)

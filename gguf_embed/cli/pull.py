"""``gguf-embed pull``: a ready GGUF of a models.toml model from the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import click

from .common import stderr, user_errors


@click.command("pull")
@click.argument("name")
@click.option("-q", "--quant", help="Quantisation to fetch, e.g. Q8_0, Q4_K_M, F16 (default: the entry's default_quant).")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where GGUFs live (the file goes to MODELS_DIR/hf/OWNER/REPO/).")
def pull_cmd(name: str, quant: str | None, models_dir: Path | None) -> None:
    """Download the ready GGUF that models.toml names for NAME (or an hf:OWNER/REPO[:QUANT] spec),
    checked against the Hub's sha256; prints its path. Entries without one say to convert."""
    from ..model.sources import pull

    with user_errors():
        path = pull(name, quant=quant, models_dir=models_dir)
    stderr.print(f"{name}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    click.echo(str(path))

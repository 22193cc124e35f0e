"""``gguf-embed cache``: the vector cache shared by encode, serve and Ray jobs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..store.cache import VectorCache, default_cache_path
from .common import user_errors

__all__ = ["cache_cmd"]


@click.group("cache")
def cache_cmd() -> None:
    """The vector cache shared by encode, serve and Ray jobs."""


@cache_cmd.command("stats")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), help="Cache file (default: the standard one).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cache_stats(cache, as_json):
    """How big the cache is, per model and settings."""
    path = cache or default_cache_path()
    if not path.exists():
        raise click.ClickException(f"no cache at {path}")
    with user_errors(), VectorCache(path) as store:
        info = store.stats()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['path']}: {info['vectors']:,} vectors, {info['bytes'] / 2**20:,.1f} MiB on disk")
    for s in info["spaces"]:
        p = s["params"]
        click.echo(f"  {s['model']} sha256 {s['model_sha256'][:12]} {p['input_type']} dims {s['dims']} "
                   f"{'normalized' if p['normalize'] else 'raw'} truncate {p['truncate']}: {s['vectors']:,} vectors, "
                   f"{s['vector_bytes'] / 2**20:,.1f} MiB, last used {s['last_used'] or '-'}")


@cache_cmd.command("prune")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), help="Cache file (default: the standard one).")
@click.option("--older-than", type=click.FloatRange(min=0), help="Delete vectors not used for this many days.")
@click.option("--model-sha256", help="Delete the vectors of one model file (a prefix of its sha256 is enough).")
@click.option("--all", "everything", is_flag=True, help="Delete every vector.")
def cache_prune(cache, older_than, model_sha256, everything):
    """Delete cached vectors and give the space back."""
    path = cache or default_cache_path()
    if not path.exists():
        raise click.ClickException(f"no cache at {path}")
    with user_errors(), VectorCache(path) as store:
        before = store.stats()["bytes"]
        n = store.prune(older_than_days=older_than, model_sha256=model_sha256, everything=everything)
        after = store.stats()["bytes"]
    click.echo(f"deleted {n:,} vectors; {before / 2**20:,.1f} MiB -> {after / 2**20:,.1f} MiB")

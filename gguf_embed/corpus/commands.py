"""``gguf-embed encode`` (corpus jobs) and ``gguf-embed cache``: argv in, files out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..cli_common import make_embedder, runtime_options, stderr, user_errors
from ..errors import InvalidInputError
from .cache import VectorCache, sha256_file, default_cache_path
from .job import DEFAULT_WINDOW, JobSpec, plan_units, run_job
from .manifest import build_manifest, utc_now
from .readers import INPUT_FORMATS, BadInputError, read_corpus
from .writers import OUTPUT_FORMATS, atomic_path, output_format, publish, sidecar, write_rows

__all__ = ["encode_cmd", "cache_cmd"]

PROGRESS_MIN_ITEMS = 100


class _Echo:
    """A text stream onto click's stdout (so pipes and CliRunner both see it)."""

    def write(self, s: str) -> None:
        click.echo(s, nl=False)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
        TextColumn("{task.fields[tps]:,.0f} tok/s, {task.fields[cached]:,} cached"), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(),
        console=stderr, disable=quiet, transient=False,
    )


def _progress_file(output: Path) -> Path:
    return output.with_name(f".{output.name}.progress.sqlite")


def _remove_db(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def _open_store(cache: Path | None, no_cache: bool, output: Path | None, restart: bool) -> VectorCache | None:
    """The shared cache, or (with --no-cache) a private progress file next to the output for resuming."""
    if not no_cache:
        return VectorCache(cache or default_cache_path())
    if output is None:
        return None
    progress = _progress_file(output)
    if restart:
        _remove_db(progress)
    return VectorCache(progress)


def _check_chunking(emb, spec: JobSpec) -> None:
    if spec.chunk_tokens is None:
        return
    if spec.chunk_tokens > emb.max_tokens:
        raise InvalidInputError(f"--chunk-tokens {spec.chunk_tokens} is more than the model's limit of {emb.max_tokens}")
    overhead = len(emb.tokenize(["x"], input_type=spec.input_type, instruction=spec.instruction)[0])
    if spec.chunk_tokens <= overhead:
        raise InvalidInputError(f"--chunk-tokens {spec.chunk_tokens} leaves no room for text: the prompt and special "
                                f"tokens take {overhead - 1}")


@click.command("encode")
@click.argument("files", nargs=-1, required=True)
@click.option("-m", "--model", required=True, help="A .gguf path or a converted models.toml name.")
@runtime_options
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: stdout, jsonl only).")
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), help="Output format (default: from -o's suffix, else jsonl).")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), help="Input format (default: from the suffix; folders; else txt).")
@click.option("--text-field", default="text", show_default=True, help="JSONL field / CSV or Parquet column with the text.")
@click.option("--id-field", default="id", show_default=True, help="Field / column with the id (default id: line or row number).")
@click.option("--skip-bad", is_flag=True, help="Write bad records to OUT.errors.jsonl and go on.")
@click.option("--input-type", type=click.Choice(["query", "document"]), help="Apply the model's query or document prompt.")
@click.option("--instruction", help="Task instruction for queries (Qwen3: 'Instruct: {task}\\nQuery:{text}').")
@click.option("--dimensions", type=int, help="Matryoshka dimension to cut vectors to.")
@click.option("--no-normalize", is_flag=True, help="Return raw pooled vectors.")
@click.option("--truncate", type=click.Choice(["error", "end", "start"]), default="error", show_default=True)
@click.option("--chunk-tokens", type=click.IntRange(min=2), help="Split long documents into chunks of at most N tokens.")
@click.option("--chunk-overlap", type=click.IntRange(min=0), default=0, show_default=True, help="Tokens shared by neighbouring chunks.")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), help="Vector cache file (default: $GGUF_EMBED_CACHE or ~/.cache/gguf-embed/vectors.sqlite).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the vector cache.")
@click.option("--commit-every", type=click.IntRange(min=1), default=DEFAULT_WINDOW, show_default=True,
              help="Texts embedded between commits of finished work (what a crash can lose at most).")
@click.option("--restart", is_flag=True, help="Embed everything again, ignoring earlier progress and cached vectors.")
@click.option("--ray", "ray_address", help="Run on a Ray cluster: its address, or 'local' to start one here.")
@click.option("--ray-workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray actors, each with its own model.")
@click.option("--ray-gpus", type=click.FloatRange(min=0), default=0, show_default=True, help="GPUs per Ray actor.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def encode_cmd(files, model, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type, vram, verbose,
               output, fmt, input_format, text_field, id_field, skip_bad, input_type, instruction, dimensions,
               no_normalize, truncate, chunk_tokens, chunk_overlap, cache, no_cache, commit_every, restart, ray_address, ray_workers,
               ray_gpus, quiet):
    """Embed a corpus: FILES are .txt (one text per line), .jsonl, .csv, .parquet or folders of .txt/.md."""
    fmt = output_format(output, fmt)
    if fmt != "jsonl" and output is None:
        raise click.UsageError(f"--format {fmt} needs -o/--output")
    if skip_bad and output is None:
        raise click.UsageError("--skip-bad needs -o/--output (bad records go to OUT.errors.jsonl)")
    if chunk_tokens is None and chunk_overlap:
        raise click.UsageError("--chunk-overlap needs --chunk-tokens")
    if chunk_tokens is not None and chunk_overlap >= chunk_tokens:
        raise click.UsageError("--chunk-overlap must be smaller than --chunk-tokens")
    if chunk_tokens is not None and fmt == "npy":
        raise click.UsageError("npy output has no room for chunk ids and spans; use --format parquet or jsonl")
    if cache is not None and no_cache:
        raise click.UsageError("give --cache or --no-cache, not both")
    started = utc_now()
    spec = JobSpec(input_type=input_type, instruction=instruction, dimensions=dimensions, normalize=not no_normalize,
                   truncate=truncate, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap, window=commit_every)
    with user_errors():
        corpus = read_corpus(files, text_field=text_field, id_field=id_field, skip_bad=skip_bad,
                             input_format_name=input_format)
        if not corpus.records:
            raise BadInputError(f"no text to embed in {', '.join(files)}")
        on_ray = ray_address is not None
        emb = make_embedder(model, models_dir, batch_size, n_ctx, 1 if on_ray else threads,
                            0 if on_ray else n_gpu_layers, flash_attn, kv_type, verbose, None if on_ray else vram)
        _check_chunking(emb, spec)
        emb.check_dimensions(dimensions)
        store = _open_store(cache, no_cache, output, restart)
        try:
            sha = store.file_sha256(emb.info.path) if store else sha256_file(emb.info.path)
            encoder = None
            if on_ray:
                from ..ray import ray_encoder

                encoder = ray_encoder(emb, spec, model=model, model_sha256=sha, address=ray_address,
                                      workers=ray_workers, num_gpus=ray_gpus, models_dir=models_dir, threads=threads,
                                      embedder_kwargs=dict(batch_tokens=batch_size, n_ctx=n_ctx, flash_attn=flash_attn,
                                                           kv_type=kv_type, n_gpu_layers=n_gpu_layers))
            plan = plan_units(corpus.records, spec, emb)
            t0 = time.perf_counter()
            with _progress(quiet or len(plan.unique) < PROGRESS_MIN_ITEMS) as bar:
                task = bar.add_task("embedding", total=len(plan.unique), tps=0.0, cached=0)
                state = {"tokens": 0, "cached": 0}

                def step(rows: int, tokens: int, cached: int) -> None:
                    state["tokens"] += tokens
                    state["cached"] += cached
                    tps = state["tokens"] / max(time.perf_counter() - t0, 1e-9)
                    bar.update(task, advance=rows, tps=tps, cached=state["cached"])

                rows, stats, bad = run_job(corpus.records, emb, spec, encoder=encoder, store=store, model_sha256=sha,
                                           reuse=not restart, skip_bad=skip_bad, progress=step, plan=plan)
            bad = corpus.bad + bad
            stats.skipped = len(bad)
            if output is None:
                write_rows("jsonl", _Echo(), rows)
            else:
                manifest = build_manifest(emb, spec, stats, model_sha256=sha, inputs=list(files), output=output.name,
                                          fmt=fmt, started=started,
                                          extra={"cache": None if no_cache else str(store.path) if store else None,
                                                 "ray": ray_address and {"address": ray_address,
                                                                         "workers": ray_workers}})
                _write_outputs(output, fmt, rows, manifest, bad if skip_bad else None)
        finally:
            if store is not None:
                store.close()
        if no_cache and output is not None:
            _remove_db(_progress_file(output))
    if output is not None and not quiet:
        extra = f"; {len(bad)} bad records in {sidecar(output, '.errors.jsonl').name}" if bad else ""
        stderr.print(f"wrote {len(rows)} vectors of {rows.vectors.shape[1]} dims to {output} "
                     f"({stats.embedded} embedded, {stats.reused} from the cache){extra}")


def _write_outputs(output: Path, fmt: str, rows, manifest: dict, bad: list | None) -> None:
    """Errors file and manifest first, the output last: each appears whole or not at all."""
    errors = sidecar(output, ".errors.jsonl")
    if bad:
        with atomic_path(errors) as tmp:
            tmp.write_text("".join(json.dumps(b.to_json(), ensure_ascii=False) + "\n" for b in bad), encoding="utf-8")
            publish(tmp, errors)
    elif bad is not None:
        errors.unlink(missing_ok=True)
    with atomic_path(output) as out_tmp, atomic_path(sidecar(output, ".manifest.json")) as man_tmp:
        write_rows(fmt, out_tmp, rows)
        man_tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        publish(man_tmp, sidecar(output, ".manifest.json"))
        publish(out_tmp, output)


# --- cache --------------------------------------------------------------------------


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

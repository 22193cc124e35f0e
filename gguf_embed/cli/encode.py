"""``gguf-embed encode``: a corpus job (read, embed through the cache with resume, write with a manifest)."""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from .. import choices
from ..corpus.spec import DEFAULT_WINDOW, JobSpec
from ..corpus.pipeline import CorpusRequest, RayOptions, run_corpus
from ..corpus.readers import INPUT_FORMATS
from ..corpus.writers import OUTPUT_FORMATS, output_format, sidecar
from .common import Echo, job_progress, open_model, runtime_options, stderr, user_errors

__all__ = ["encode_cmd"]

PROGRESS_MIN_ITEMS = 100


def _outputs(ctx, param, value: str) -> tuple[str, ...]:
    """``--emit dense,sparse``: outputs named once each, in choices.OUTPUTS order."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [p for p in parts if p not in choices.OUTPUTS]
    if unknown or not parts:
        raise click.BadParameter(f"{unknown[0] if unknown else value!r} is not an output; give a comma-separated "
                                 f"list of {', '.join(choices.OUTPUTS)}")
    return tuple(o for o in choices.OUTPUTS if o in parts)


def _check_emit(outputs: tuple[str, ...], fmt: str, ray_address, late: bool = False, precision: str = "float") -> None:
    if outputs == ("dense",):
        return
    if late:
        raise click.UsageError("--late-chunking gives dense chunk vectors only; leave out --emit")
    if precision != "float":
        raise click.UsageError("--precision applies to dense vectors only; leave out --emit")
    if fmt == "npy":
        raise click.UsageError("npy output holds dense vectors only; use --format parquet or jsonl with --emit")
    if ray_address is not None:
        raise click.UsageError("--emit with sparse, colbert or tokens runs in this process, not on Ray")


def _check_usage(fmt, output, skip_bad, chunk_tokens, chunk_overlap, cache, no_cache, keep_text=False) -> None:
    if keep_text and fmt == "npy":
        raise click.UsageError("npy output has no room for texts; use --format parquet or jsonl with --keep-text")
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


def _progress(quiet: bool):
    """A progress factory for run_corpus: a bar on stderr (none for small jobs or with -q; with no
    total known, the bar appears once the job passes ``PROGRESS_MIN_ITEMS`` rows)."""

    @contextmanager
    def factory(total: int | None):
        t0, state, shown = time.perf_counter(), {"tokens": 0, "cached": 0, "rows": 0}, {}
        with ExitStack() as stack:
            def show() -> None:
                bar = stack.enter_context(job_progress(False))
                shown["bar"] = bar
                shown["task"] = bar.add_task("embedding", total=total, tps=0.0, cached=0, completed=state["rows"])

            if not quiet and total is not None and total >= PROGRESS_MIN_ITEMS:
                show()

            def step(rows: int, tokens: int, cached: int) -> None:
                state["tokens"] += tokens
                state["cached"] += cached
                state["rows"] += rows
                tps = state["tokens"] / max(time.perf_counter() - t0, 1e-9)
                if "bar" in shown:
                    shown["bar"].update(shown["task"], advance=rows, tps=tps, cached=state["cached"])
                elif not quiet and total is None and state["rows"] >= PROGRESS_MIN_ITEMS:
                    show()

            yield step
            if "bar" in shown and total is None:  # the count is known now
                shown["bar"].update(shown["task"], total=state["rows"])

    return factory


@click.command("encode")
@click.argument("files", nargs=-1, required=True)
@click.option("-m", "--model", required=True, help="The model: a .gguf path, a pulled or converted models.toml name, hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO:QUANT or ollama:NAME[:TAG].")
@runtime_options
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file (default: stdout, jsonl only).")
@click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), help="Output format (default: from -o's suffix, else jsonl).")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), help="Input format (default: from the suffix; folders; else txt).")
@click.option("--text-field", default="text", show_default=True, help="JSONL field / CSV or Parquet column with the text.")
@click.option("--id-field", default="id", show_default=True, help="Field / column with the id (default id: line or row number).")
@click.option("--skip-bad", is_flag=True, help="Write bad records to OUT.errors.jsonl and go on.")
@click.option("--input-type", type=click.Choice(choices.INPUT_TYPES), help="Apply the model's query or document prompt.")
@click.option("--instruction", help="Task instruction for queries (Qwen3: 'Instruct: {task}\\nQuery:{text}').")
@click.option("--dimensions", type=int, help="Matryoshka dimension to cut vectors to.")
@click.option("--no-normalize", is_flag=True, help="Return raw pooled vectors.")
@click.option("--truncate", type=click.Choice(choices.TRUNCATE_POLICIES), default="error", show_default=True)
@click.option("--chunk-tokens", type=click.IntRange(min=2), help="Split long documents into chunks of at most N tokens.")
@click.option("--chunk-overlap", type=click.IntRange(min=0), default=0, show_default=True, help="Tokens shared by neighbouring chunks.")
@click.option("--late-chunking", is_flag=True,
              help="Embed each document once (in passes of the model's limit) and mean-pool each chunk's tokens.")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), help="Vector cache file (default: $GGUF_EMBED_CACHE or ~/.cache/gguf-embed/vectors.sqlite).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the vector cache.")
@click.option("--commit-every", type=click.IntRange(min=1), default=DEFAULT_WINDOW, show_default=True,
              help="Texts embedded between commits of finished work (what a crash can lose at most).")
@click.option("--restart", is_flag=True, help="Embed everything again, ignoring earlier progress and cached vectors.")
@click.option("--ray", "ray_address", help="Run on a Ray cluster: its address, or 'local' to start one here.")
@click.option("--ray-workers", type=click.IntRange(min=1), default=1, show_default=True, help="Ray actors, each with its own model.")
@click.option("--ray-gpus", type=click.FloatRange(min=0), default=0, show_default=True, help="GPUs per Ray actor.")
@click.option("--precision", type=click.Choice(choices.PRECISIONS), default="float", show_default=True,
              help="Vectors as written: float32, int8/uint8 codes (scale fixed per model) or packed bits (binary, ubinary).")
@click.option("--code-scheme", type=click.Choice(choices.CODE_SCHEMES), default="symmetric", show_default=True,
              help="int8/uint8 codes: one scale per model, 0 at code 0 (raw int8 dot products rank like the floats), "
                   "or sentence-transformers' per-dimension offset and step.")
@click.option("--rescore-vectors", "rescore", type=click.Choice(choices.RESCORE_PRECISIONS),
              help="With --precision binary|ubinary (Parquet): also store int8 codes or float32 vectors, read only to rescore search candidates.")
@click.option("--emit", "outputs", default="dense", show_default=True, callback=_outputs,
              help="Outputs per text, comma-separated: dense (the pooled vector), sparse and colbert (bge-m3's lexical "
                   "weights and multi-vectors), tokens (every token's id and vector); all from one pass.")
@click.option("--batch-invariant", is_flag=True,
              help="Run each text in a llama.cpp batch of its own: its vector is bit-identical whatever it is batched "
                   "with (always on for int8/uint8/binary/ubinary; slower for short texts).")
@click.option("--keep-text", is_flag=True, help="Add each row's text: a text column (Parquet), a text field (JSONL).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def encode_cmd(files, model, settings, quiet, **opts):
    """Embed a corpus: FILES are .txt (one text per line), .jsonl, .csv, .parquet or folders of .txt/.md."""
    req, spec, settings = _request(tuple(files), model, settings, opts)
    with user_errors(), open_model(model, settings) as emb:
        done = run_corpus(req, emb, spec, progress=_progress(quiet), stdout=Echo())
    if req.output is not None and not quiet:
        bad = done.bad
        extra = f"; {len(bad)} bad records in {sidecar(req.output, '.errors.jsonl').name}" if bad else ""
        kind = "" if req.precision == "float" else f"{req.precision} "
        what = f"{kind}vectors of {done.dims} dims" if spec.dense_only else f"rows ({', '.join(spec.outputs)})"
        stderr.print(f"wrote {done.count} {what} to {req.output} "
                     f"({done.stats.embedded} embedded, {done.stats.reused} from the cache){extra}")


def _request(files: tuple[str, ...], model: str, settings, o: dict):
    """The command's options as the library's request objects: (CorpusRequest, JobSpec, the settings
    this process runs with)."""
    fmt = output_format(o["output"], o["fmt"])
    _check_usage(fmt, o["output"], o["skip_bad"], o["chunk_tokens"], o["chunk_overlap"], o["cache"], o["no_cache"],
                 o["keep_text"])
    _check_emit(o["outputs"], fmt, o["ray_address"], o["late_chunking"], o["precision"])
    spec = JobSpec(input_type=o["input_type"], instruction=o["instruction"], dimensions=o["dimensions"],
                   normalize=not o["no_normalize"], truncate=o["truncate"], chunk_tokens=o["chunk_tokens"],
                   chunk_overlap=o["chunk_overlap"], window=o["commit_every"], late_chunking=o["late_chunking"],
                   outputs=o["outputs"], batch_invariant=o["batch_invariant"])
    ray = None
    if o["ray_address"] is not None:  # the driver tokenises and checks; the actors embed with the user's settings
        ray = RayOptions(o["ray_address"], o["ray_workers"], o["ray_gpus"], model, settings.with_(vram=None))
        settings = settings.with_(n_threads=1, n_gpu_layers=0, vram=None)
    req = CorpusRequest(inputs=files, output=o["output"], fmt=fmt, text_field=o["text_field"], id_field=o["id_field"],
                        input_format=o["input_format"], skip_bad=o["skip_bad"], cache=o["cache"],
                        no_cache=o["no_cache"], restart=o["restart"], ray=ray, keep_text=o["keep_text"],
                        precision=o["precision"], rescore=o["rescore"], code_scheme=o["code_scheme"])
    return req, spec, settings

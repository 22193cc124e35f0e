"""The ``gguf-embed`` command: argv in, text and files out; no model logic here."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .cli_common import make_embedder, progress_bar, read_texts, runtime_options, stderr, user_errors
from .registry import QUANT_TYPES, default_models_dir, load_registry

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gguf-embed")
def main() -> None:
    """Quantised GGUF text-embedding models on llama.cpp: convert, encode, serve."""


# --- models -------------------------------------------------------------------------


@main.command("models")
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


# --- convert ------------------------------------------------------------------------


@main.command("convert")
@click.argument("src")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output .gguf (default: MODELS_DIR/NAME-QUANT.gguf).")
@click.option("-q", "--quant", type=click.Choice(QUANT_TYPES, case_sensitive=False), help="Tensor type (default: the registry's, else F16).")
@click.option("--pooling", type=click.Choice(["mean", "cls", "last"]), help="Override the pooling read from the model files.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Token limit to record in the GGUF.")
@click.option("--matryoshka-min", type=click.IntRange(min=1), help="Smallest Matryoshka dimension the model supports.")
@click.option("--allow-pickle", is_flag=True, help="Read pickle (pytorch_model.bin) weights. Only for files you trust.")
@click.option("--task", type=click.Choice(["embed", "rerank"]), help="Force the model's task (default: from the model files).")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for quantisation.")
@click.option("-v", "--verbose", is_flag=True, help="Log every tensor and llama.cpp's own output.")
def convert_cmd(src, output, quant, pooling, max_tokens, matryoshka_min, allow_pickle, task, models_dir, threads, verbose):
    """Convert a Hugging Face model (folder, models.toml name or Hub repo id) to GGUF."""
    from . import _llama
    from .convert import convert_model

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("gguf").setLevel(logging.INFO if verbose else logging.ERROR)
    _llama.set_verbose(verbose)
    with user_errors():
        reg = load_registry()
        entry = reg.models.get(src)
        quant = (quant or (entry.default_quant if entry else "F16")).upper()
        if output is None:
            stem = entry.name if entry else Path(src.rstrip("/")).name
            output = (models_dir or default_models_dir()) / f"{stem}-{quant}.gguf"
        with progress_bar(f"converting {src}", quiet=False) as bar:
            result = convert_model(
                src, output, quant, registry=reg, pooling=pooling, max_tokens=max_tokens,
                matryoshka_min=matryoshka_min, allow_pickle=allow_pickle, threads=threads, progress=bar, task=task,
            )
    stderr.print(f"wrote {result.path} ({result.quant}, {result.size_bytes / 2**20:.1f} MiB)")
    click.echo(str(result.path))


# --- encode (gguf_embed/corpus/commands.py) ------------------------------------


# --- plan ---------------------------------------------------------------------------

from .plan_cli import plan_cmd  # noqa: E402

main.add_command(plan_cmd)


# --- serve --------------------------------------------------------------------------


@main.command("serve")
@click.option("-m", "--model", "models", multiple=True, required=True, help="A .gguf path or converted models.toml name (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (local only by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key", help="Require 'Authorization: Bearer KEY'.")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path), help="Read the API key from a file.")
@click.option("--max-batch-tokens", default=2048, show_default=True, type=click.IntRange(min=16),
              help="Tokens per scheduling round shared by concurrent requests.")
@click.option("--max-inputs", default=2048, show_default=True, type=click.IntRange(min=1), help="Inputs per request.")
@click.option("--max-body-mb", default=32, show_default=True, type=click.IntRange(min=1), help="Request body limit.")
@click.option("--truncate", type=click.Choice(["error", "end", "start"]), default="error", show_default=True,
              help="Default for over-long inputs (a request may override it).")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow browser requests from this origin (repeatable).")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), help="Answer repeated texts from this vector cache (shared with encode).")
@runtime_options
def serve_cmd(models, host, port, api_key, api_key_file, max_batch_tokens, max_inputs, max_body_mb, truncate,
              cors_origins, cache, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type, vram, verbose):
    """Serve OpenAI-compatible /v1/embeddings and Jina/Cohere/TEI-compatible /v1/rerank endpoints."""
    import functools

    import uvicorn

    from .model_info import resolve_model
    from .server import create_app

    if api_key and api_key_file:
        raise click.UsageError("give --api-key or --api-key-file, not both")
    if api_key_file:
        try:
            api_key = api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise click.ClickException(f"cannot read {api_key_file}: {exc.strerror}") from None
        if not api_key:
            raise click.ClickException(f"{api_key_file} is empty")
    with user_errors():
        paths = [resolve_model(m, models_dir=models_dir) for m in models]  # fail before binding the port
        if vram:
            from .plan import fit_budget, parse_size

            for p in paths:
                fit_budget(p, parse_size(vram), n_ctx=n_ctx, batch_tokens=batch_size)
    if threads is None:
        # leave a core for HTTP, JSON and tokenisation: llama.cpp's threads wait on each other
        # at every step, and one of them losing its core to the web layer stalls them all
        from ._llama import default_threads

        threads = max(1, default_threads() - 1)
    loaders = [
        functools.partial(make_embedder, p, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type,
                          verbose, vram)
        for p in paths
    ]
    app = create_app(loaders, api_key=api_key, max_batch_tokens=max_batch_tokens, max_inputs=max_inputs,
                     truncate=truncate, max_body_bytes=max_body_mb * 2**20, cors_origins=cors_origins, cache=cache)
    if host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(f"[yellow]listening on {host}: reachable from other machines{'' if api_key else ' without an API key'}")
    uvicorn.run(app, host=host, port=port, log_level="info" if verbose else "warning")


from .cli_rerank import rerank_command  # noqa: E402

main.add_command(rerank_command(runtime_options, make_embedder, read_texts, user_errors))
from .cli_tokenize import tokenize_cmd  # noqa: E402

main.add_command(tokenize_cmd)
from .cli_eval import eval_cmd  # noqa: E402

main.add_command(eval_cmd)


from .corpus.commands import cache_cmd, encode_cmd  # noqa: E402

main.add_command(encode_cmd)
main.add_command(cache_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()

"""What the ``gguf-embed`` sub-commands share: one-line errors, progress on stderr, the
llama.cpp options of encode, serve, rerank and tokenize, and building an Embedder from them."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .errors import GGUFEmbedError

__all__ = ["stderr", "user_errors", "progress_bar", "runtime_options", "make_embedder", "read_texts"]

stderr = Console(stderr=True)


def _fail(exc: Exception) -> click.ClickException:
    msg = exc.message if isinstance(exc, GGUFEmbedError) else str(exc)
    return click.ClickException(msg.splitlines()[0] if msg else type(exc).__name__)


@contextmanager
def user_errors():
    """Turn the errors a user can cause into one-line messages and a non-zero exit."""
    try:
        yield
    except GGUFEmbedError as exc:
        raise _fail(exc) from None
    except MemoryError:
        raise click.ClickException("out of memory; try a smaller --batch-tokens or --ctx") from None


def progress_bar(label: str, quiet: bool = False) -> Progress:
    return Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=stderr, disable=quiet, transient=False,
    )


def read_texts(files) -> list[str]:
    """One text per non-empty line of FILE(s) ('-' for stdin); a bad file is a one-line error."""
    from .corpus.readers import read_lines

    with user_errors():
        return read_lines(tuple(files))


def runtime_options(f):
    """The llama.cpp settings shared by encode and serve."""
    for opt in reversed([
        click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live."),
        click.option("--batch-tokens", "batch_size", type=click.IntRange(min=16),
                     help="Tokens per llama.cpp batch (default 512)."),
        click.option("--batch-size", "batch_size", type=click.IntRange(min=16), hidden=True),  # the old name
        click.option("--ctx", "n_ctx", type=click.IntRange(min=16), help="Context size for decoder models (default min(limit, 8192))."),
        click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all available; serve leaves one for the web layer)."),
        click.option("--n-gpu-layers", type=int, help="Layers to offload to the GPU (default: all when built with GPU support)."),
        click.option("--flash-attn", type=click.Choice(["auto", "on", "off"]), help="Flash attention (default: auto on GPU; on CPU, on for encoder models, off for decoders)."),
        click.option("--kv-type", type=click.Choice(["f16", "f32", "q8_0", "q4_0", "bf16"]), help="KV-cache type (default: f16; f32 for rerankers)."),
        click.option("--vram", help="GPU memory budget (e.g. 3GB): choose layers, batch, KV type to fit it."),
        click.option("-v", "--verbose", is_flag=True, help="Show llama.cpp's own log output."),
    ]):
        f = opt(f)
    return f


def make_embedder(model, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type, verbose, vram=None):
    from .embedder import Embedder

    kwargs = dict(batch_tokens=batch_size, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn, kv_type=kv_type)
    if vram:
        from .model_info import resolve_model
        from .plan import fit_budget, parse_size

        model = resolve_model(model, models_dir=models_dir)
        planned = fit_budget(model, parse_size(vram), n_ctx=n_ctx, batch_tokens=batch_size)
        kwargs.update(planned.settings())
        stderr.print(f"[dim]--vram {vram}: {planned.n_gpu_layers} layers on the GPU, batch {planned.batch_tokens}, "
                     f"KV {planned.kv_type}, flash attention {planned.flash_attn}, "
                     f"{planned.device_total('GPU') / 2**30:.2f} GiB planned")
    return Embedder(model, models_dir=models_dir, n_threads=threads, verbose=verbose, **kwargs)

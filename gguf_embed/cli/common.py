"""What the ``gguf-embed`` sub-commands share: one-line errors, progress on stderr, the runtime
options (collected into one ``RuntimeSettings``), and opening a model from them."""

from __future__ import annotations

import functools
import re
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .. import choices
from ..engine.settings import RuntimeSettings
from ..errors import GGUFEmbedError

__all__ = ["stderr", "user_errors", "progress_bar", "job_progress", "runtime_options", "open_model", "read_texts",
           "Echo"]

stderr = Console(stderr=True)


#: the library's setting names (written `name` in its messages) whose command-line flag is not ``--name``
FLAGS = {"n_ctx": "--ctx", "output": "-o", "everything": "--all"}


def flag_words(message: str) -> str:
    """A library message in the command line's words: each `setting` named by its flag."""
    return re.sub(r"`([a-z][a-z0-9_]*)`", lambda m: FLAGS.get(m[1], "--" + m[1].replace("_", "-")), message)


def _fail(exc: Exception) -> click.ClickException:
    msg = exc.message if isinstance(exc, GGUFEmbedError) else str(exc)
    return click.ClickException(flag_words(msg.splitlines()[0]) if msg else type(exc).__name__)


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


def job_progress(quiet: bool) -> Progress:
    """A corpus job's bar: rows, tokens/s, rows from the cache, ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
        TextColumn("{task.fields[tps]:,.0f} tok/s, {task.fields[cached]:,} cached"), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(),
        console=stderr, disable=quiet, transient=False,
    )


class Echo:
    """A text stream onto click's stdout (so pipes and CliRunner both see it)."""

    def write(self, s: str) -> None:
        click.echo(s, nl=False)


def read_texts(files) -> list[str]:
    """One text per non-empty line of FILE(s) ('-' for stdin); a bad file is a one-line error."""
    from ..text.files import read_lines

    with user_errors():
        return read_lines(tuple(files))


_RUNTIME_OPTIONS = [
    click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live."),
    click.option("--batch-tokens", "batch_size", type=click.IntRange(min=16),
                 help="Tokens per llama.cpp batch (default 512)."),
    click.option("--batch-size", "batch_size", type=click.IntRange(min=16), hidden=True),  # the old name
    click.option("--ctx", "n_ctx", type=click.IntRange(min=16), help="Context size for decoder models (default min(limit, 8192))."),
    click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: all available; serve leaves one for the web layer)."),
    click.option("--n-gpu-layers", type=int, help="Layers to offload to the GPU (default: all when built with GPU support)."),
    click.option("--flash-attn", type=click.Choice(choices.FLASH_ATTN_MODES), help="Flash attention (default: auto on GPU; on CPU, on for encoder models, off for decoders)."),
    click.option("--kv-type", type=click.Choice(choices.KV_TYPES), help="KV-cache type (default: f16; f32 for rerankers)."),
    click.option("--vram", help="GPU memory budget (e.g. 3GB): choose layers, batch, KV type to fit it."),
    click.option("--query-prompt", help="Text put before queries, replacing the model's (see gguf-embed inspect)."),
    click.option("--document-prompt", help="Text put before documents, replacing the model's."),
    click.option("--no-prefix-cache", "no_prefix_cache", is_flag=True,
                 help="Decode every input whole, even where inputs begin alike (Qwen3's query instruction)."),
    click.option("-v", "--verbose", is_flag=True, help="Show llama.cpp's own log output."),
]


def runtime_options(f):
    """The llama.cpp options shared by encode, serve, rerank, tokenize and eval, handed to the
    command as one ``settings: RuntimeSettings``."""

    @functools.wraps(f)
    def command(*args, models_dir, batch_size, n_ctx, threads, n_gpu_layers, flash_attn, kv_type, vram, query_prompt,
                document_prompt, no_prefix_cache, verbose, **kwargs):
        settings = RuntimeSettings.of(models_dir=models_dir, batch_tokens=batch_size, n_ctx=n_ctx, n_threads=threads,
                                      n_gpu_layers=n_gpu_layers, flash_attn=flash_attn, kv_type=kv_type, vram=vram,
                                      query_prompt=query_prompt, document_prompt=document_prompt, verbose=verbose,
                                      prefix_cache=False if no_prefix_cache else None)
        return f(*args, settings=settings, **kwargs)

    for opt in reversed(_RUNTIME_OPTIONS):
        command = opt(command)
    return command


def open_model(model, settings: RuntimeSettings, kind=None):
    """An Embedder (or ``kind``: Reranker) for ``model``; says what a ``--vram`` budget chose."""
    from ..embedder import Embedder
    from ..engine.session import describe_plan

    opened = (kind or Embedder)(model, settings=settings)
    line = describe_plan(opened.session)
    if line:
        stderr.print(f"[dim]{line}")
    return opened

"""``gguf-embed serve``: the HTTP server on this machine."""

from __future__ import annotations

from pathlib import Path

import click

from .. import choices
from .common import open_model, runtime_options, stderr, user_errors


@click.command("serve")
@click.option("-m", "--model", "models", multiple=True, required=True, help="A model (repeatable): a .gguf path, a pulled or converted models.toml name, hf:OWNER/REPO/FILE.gguf, hf:OWNER/REPO:QUANT or ollama:NAME[:TAG].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (local only by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key", help="Require 'Authorization: Bearer KEY'.")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path), help="Read the API key from a file.")
@click.option("--max-batch-tokens", default=2048, show_default=True, type=click.IntRange(min=16),
              help="Tokens per scheduling round shared by concurrent requests.")
@click.option("--max-inputs", default=2048, show_default=True, type=click.IntRange(min=1), help="Inputs per request.")
@click.option("--max-body-mb", default=32, show_default=True, type=click.IntRange(min=1), help="Request body limit.")
@click.option("--truncate", type=click.Choice(choices.TRUNCATE_POLICIES), default="error", show_default=True,
              help="Default for over-long inputs (a request may override it).")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow browser requests from this origin (repeatable).")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), help="Answer repeated texts from this vector cache (shared with encode).")
@click.option("--alias", "aliases", multiple=True, metavar="NAME=MODEL",
              help="Let requests name a served model NAME too (repeatable), e.g. text-embedding-3-small=all-minilm-l6-v2.")
@click.option("--strict-model-names", is_flag=True,
              help="Refuse (404) a request whose model is not a served name or alias; by default any name reaches "
                   "the one served model of the request's task.")
@runtime_options
def serve_cmd(models, host, port, api_key, api_key_file, max_batch_tokens, max_inputs, max_body_mb, truncate,
              cors_origins, cache, aliases, strict_model_names, settings):
    """Serve OpenAI, Ollama, TEI, Cohere and Jina-compatible embedding and rerank APIs."""
    import uvicorn

    from ..server import create_app
    from ..server.app import ServerOptions
    from ..server.worker import model_loaders

    if api_key and api_key_file:
        raise click.UsageError("give --api-key or --api-key-file, not both")
    if api_key_file:
        try:
            api_key = api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise click.ClickException(f"cannot read {api_key_file}: {exc.strerror}") from None
        if not api_key:
            raise click.ClickException(f"{api_key_file} is empty")
    pairs = [a.partition("=") for a in aliases]
    bad = [a for a, (name, eq, target) in zip(aliases, pairs) if not (name.strip() and eq and target.strip())]
    if bad:
        raise click.UsageError(f"--alias {bad[0]!r}: expected NAME=MODEL")
    with user_errors():
        loaders = model_loaders(models, settings, open_model)  # checked before the port is bound
    options = ServerOptions(api_key=api_key, max_batch_tokens=max_batch_tokens, max_inputs=max_inputs,
                            truncate=truncate, max_body_bytes=max_body_mb * 2**20, cors_origins=tuple(cors_origins),
                            cache=cache, strict_model_names=strict_model_names,
                            aliases=tuple((name.strip(), target.strip()) for name, _, target in pairs))
    app = create_app(loaders, options=options)
    if host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(f"[yellow]listening on {host}: reachable from other machines{'' if api_key else ' without an API key'}")
    uvicorn.run(app, host=host, port=port, log_level="info" if settings.verbose else "warning")

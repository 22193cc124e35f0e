"""Ollama's API: ``POST /api/embed``, the legacy ``POST /api/embeddings``, ``GET /api/tags``,
``POST /api/show``, ``GET /api/ps`` and ``GET /api/version``, so that a tool set up for Ollama
(``http://127.0.0.1:11434``) embeds through gguf-embed unchanged.

Bodies and answers are Ollama's (``api/types.go``): ``/api/embed`` takes ``model``, ``input`` (a
string or a list of strings), ``truncate`` (default true: cut an over-long input at the end),
``dimensions``, ``options`` and ``keep_alive`` (accepted; the model stays loaded) and answers
``model``, ``embeddings``, ``total_duration``, ``load_duration`` and ``prompt_eval_count``. Model
names compare as Ollama's do (``NAME`` is ``NAME:latest``, case-insensitive). Generation, chat and
model management answer a 400 that says so. Every client mistake is a 4xx in Ollama's error
shape, ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse

from ..errors import GGUFEmbedError, InputTooLongError, InvalidInputError, TooManyInputsError, check_text
from .embeddings import EmbeddingRequest, json_object, optional_flag, optional_str

__all__ = ["OllamaEmbed", "parse_ollama_embed", "ollama_error", "quantization", "ROUTES", "UNSUPPORTED",
           "API_VERSION"]

API_VERSION = "0.12.0"  # the Ollama API this module follows (/api/embed with dimensions)
UNSUPPORTED = {
    "/api/generate": "text generation", "/api/chat": "chat", "/api/pull": "pulling models",
    "/api/push": "pushing models", "/api/create": "creating models", "/api/copy": "copying models",
    "/api/delete": "deleting models",
}


@dataclass(frozen=True)
class OllamaEmbed:
    model: str | None
    texts: list[str]  # may be empty: Ollama answers an empty input with no embeddings
    truncate: bool
    dimensions: int | None
    legacy: bool  # /api/embeddings: one prompt -> one "embedding"


def ollama_error(exc: GGUFEmbedError) -> JSONResponse:
    """Ollama's error shape: ``{"error": "..."}``."""
    return JSONResponse({"error": exc.message}, status_code=exc.status_code)


def _texts(value: Any, key: str, max_inputs: int) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInputError(f"invalid input type: '{key}' must be a string or a list of strings", param=key)
    if len(value) > max_inputs:
        raise TooManyInputsError(f"'{key}' has {len(value)} items; at most {max_inputs} per request", param=key)
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise InvalidInputError(f"invalid input type: {key}[{i}] is not a string", param=key)
        if not text:
            raise InvalidInputError(f"{key}[{i}] is an empty string", param=key)
        check_text(text, f"{key}[{i}]", param=key, index=i)
    return list(value)


def _accepted(body: dict) -> None:
    """``options`` and ``keep_alive``: checked as Ollama's binding checks them, then not needed."""
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise InvalidInputError("'options' must be an object", param="options")
    keep = body.get("keep_alive")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, (str, int, float))):
        raise InvalidInputError("'keep_alive' must be a duration string or a number of seconds", param="keep_alive")
    if isinstance(keep, str):
        check_text(keep, "'keep_alive'", param="keep_alive")


def parse_ollama_embed(raw: bytes, *, max_inputs: int, legacy: bool = False) -> OllamaEmbed:
    """An ``/api/embed`` (or, ``legacy``, ``/api/embeddings``) body, checked: every client mistake is a
    ``GGUFEmbedError`` with a 4xx status."""
    body = json_object(raw)
    model = optional_str(body, "model")
    _accepted(body)
    if legacy:
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise InvalidInputError("'prompt' must be a string", param="prompt")
        return OllamaEmbed(model, _texts(prompt, "prompt", 1), True, None, True)
    truncate = optional_flag(body, "truncate", True)
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 0):
        raise InvalidInputError("'dimensions' must be a positive integer", param="dimensions")
    return OllamaEmbed(model, _texts(body.get("input"), "input", max_inputs), truncate, dims or None,
                       False)


async def _embed(call, raw: bytes, legacy: bool) -> tuple[OllamaEmbed, Any, np.ndarray, int]:
    req = parse_ollama_embed(raw, max_inputs=call.options.max_inputs, legacy=legacy)
    worker = call.lookup(req.model)
    emb = worker.embedder
    dims = req.dimensions if req.dimensions is not None and req.dimensions < emb.dimensions else None
    if not req.texts:  # Ollama's way to load a model: nothing to embed
        return req, worker, np.zeros((0, dims or emb.dimensions), np.float32), 0
    try:
        vectors, n_tokens = await worker.embed(EmbeddingRequest(
            model=req.model, texts=req.texts, token_ids=None, encoding_format="float", dimensions=dims,
            input_type=None, instruction=None, truncate="end" if req.truncate else "error"))
    except InputTooLongError as exc:  # the words Ollama's clients look for
        raise InvalidInputError(f"the input length exceeds the context length: input {exc.index} has "
                                f"{exc.counted}, the model's limit is {exc.limit} (set truncate to true to cut it)",
                                param="input") from None
    call.done(len(vectors), n_tokens)
    return req, worker, vectors, n_tokens


async def embed_route(call, raw: bytes) -> dict:
    """POST /api/embed."""
    t0 = time.perf_counter_ns()
    _, worker, vectors, n_tokens = await _embed(call, raw, legacy=False)
    embeddings = await asyncio.to_thread(vectors.tolist)
    return {"model": worker.name, "embeddings": embeddings, "total_duration": time.perf_counter_ns() - t0,
            "load_duration": 0, "prompt_eval_count": n_tokens}


async def embeddings_route(call, raw: bytes) -> dict:
    """POST /api/embeddings (Ollama's legacy route): ``prompt`` -> ``embedding``."""
    _, _, vectors, _ = await _embed(call, raw, legacy=True)
    return {"embedding": vectors[0].tolist() if len(vectors) else []}


# --- what is served -------------------------------------------------------------------------


def _human(n: int) -> str:
    """A parameter count as Ollama shows it: 596.05M, 1.5B, 8B."""
    for unit, scale, digits in (("B", 10**9, 1), ("M", 10**6, 2), ("K", 10**3, 0)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{digits}f}{unit}"
    return str(n)


def _n_params(worker) -> int:
    tensors = worker.embedder.session.gguf.tensors.values()
    return int(sum(int(np.prod(t.dims, dtype=np.int64)) for t in tensors))


def _digest(path: Path, stat) -> str:
    """The blob's own digest for a file in Ollama's store, else a hash of the path, size and time."""
    if path.name.startswith("sha256-") and len(path.name) == 71:
        return path.name[7:]
    return hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()


def quantization(info) -> str:
    """The file's type as Ollama shows it: F32, F16, Q8_0, Q4_K_M (llama.cpp's ALL_F32 as F32)."""
    name = info.file_type_name or "unknown"
    return name[len("ALL_"):] if name.startswith("ALL_") else name


def _details(worker) -> dict:
    info = worker.embedder.info
    return {"parent_model": "", "format": "gguf", "family": info.arch, "families": [info.arch],
            "parameter_size": _human(_n_params(worker)), "quantization_level": quantization(info)}


def _entry(worker) -> dict:
    """One model as ``/api/tags`` lists it."""
    path = Path(worker.embedder.info.path)
    stat = path.stat()
    name = worker.name if ":" in worker.name else f"{worker.name}:latest"
    return {"name": name, "model": name, "modified_at": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(),
            "size": stat.st_size, "digest": _digest(path, stat), "details": _details(worker)}


async def tags_route(call, raw: bytes) -> dict:
    """GET /api/tags: the served models."""
    return {"models": [_entry(w) for w in call.state.models.values()]}


async def ps_route(call, raw: bytes) -> dict:
    """GET /api/ps: the loaded models (all of them, for as long as the server runs)."""
    until = (datetime.now(timezone.utc) + timedelta(days=365 * 100)).isoformat()
    return {"models": [{**_entry(w), "expires_at": until, "size_vram": 0, "context_length": w.embedder.max_tokens}
                       for w in call.state.models.values()]}


def _model_info(worker) -> dict:
    """The file's metadata as Ollama shows it (long arrays left empty), with the token limit gguf-embed
    applies as the context length and the parameter count."""
    info, out = worker.embedder.info, {}
    for key, value in worker.embedder.session.gguf.meta.items():
        if isinstance(value, (bool, int, float, str)) and key not in ("general.name", "tokenizer.chat_template"):
            out[key] = value
        elif isinstance(value, list):
            out[key] = value if len(value) <= 5 and all(isinstance(v, (bool, int, float, str)) for v in value) else []
    out.update({"general.architecture": info.arch, "general.parameter_count": _n_params(worker),
                f"{info.arch}.context_length": worker.embedder.max_tokens,
                f"{info.arch}.embedding_length": worker.embedder.dimensions})
    return out


async def show_route(call, raw: bytes) -> dict:
    """POST /api/show: one model's details and metadata."""
    body = json_object(raw)
    name = optional_str(body, "model") or optional_str(body, "name")
    if name is None:
        raise InvalidInputError("model is required", param="model")
    worker = call.lookup(name, None)
    path = Path(worker.embedder.info.path)
    model_info = await asyncio.to_thread(_model_info, worker)
    return {"license": "", "modelfile": f"# served by gguf-embed\nFROM {path}\n", "parameters": "", "template": "",
            "details": _details(worker), "model_info": model_info,
            "capabilities": ["embedding"] if worker.task == "embed" else [worker.task],
            "modified_at": datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()}


async def version_route(call, raw: bytes) -> dict:
    """GET /api/version: the Ollama API version this server follows."""
    return {"version": API_VERSION}


def unsupported_route(path: str):
    what = UNSUPPORTED[path]

    async def route(call, raw: bytes):
        raise InvalidInputError(f"{what} is not supported: this is gguf-embed, an Ollama-compatible server for "
                                "embedding models (/api/embed, /api/embeddings, /api/tags, /api/show, /api/ps); "
                                "serve a model from Ollama's store with 'gguf-embed serve -m ollama:NAME'")

    return route


# (methods, path, handler): registered by the app with Ollama's error shape
ROUTES = [
    (["POST"], "/api/embed", embed_route),
    (["POST"], "/api/embeddings", embeddings_route),
    (["GET"], "/api/tags", tags_route),
    (["POST"], "/api/show", show_route),
    (["GET"], "/api/ps", ps_route),
    (["GET", "HEAD"], "/api/version", version_route),
    *((["POST", "DELETE"], path, unsupported_route(path)) for path in UNSUPPORTED),
]

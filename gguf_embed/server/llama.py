"""llama-server's native embedding routes: ``POST /embedding``, and ``POST /embeddings`` when the
body is llama-server's (it has ``content`` rather than ``input``, or asks ``"pooling": "none"``);
any other ``/embeddings`` body is OpenAI's (``embeddings``).

The body: ``content`` (or ``input``, which wins when both are given) in any of llama-server's
forms (``prompts``; an empty string too, as llama-server embeds it), ``embd_normalize`` (-1 none,
0 max-abs in int16 range, 1 taxicab, 2 euclidean, the default, >2 p-norm), ``"pooling": "none"``
(the request's form of llama-server's ``--pooling none``: every token's vector, special tokens
included, as the model gives them) and gguf-embed's ``model``, ``truncate`` and ``dimensions``. The
answer is llama-server's: one ``{"index", "embedding"}`` per input, ``embedding`` a list of rows
(one pooled row, or one per token). Mistakes on ``/embedding`` come back in llama-server's error
shape, ``{"error": {"code", "message", "type"}}``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
from fastapi.responses import JSONResponse

from ..errors import GGUFEmbedError, InvalidInputError
from .embeddings import EmbeddingRequest, json_object, openai_embeddings, parse_body, per_token

__all__ = ["llama_error", "parse_native", "is_native", "embedding_route", "embeddings_any_route"]


def llama_error(exc: GGUFEmbedError) -> JSONResponse:
    """llama-server's error shape: ``{"error": {"code": STATUS, "message": ..., "type": ...}}``."""
    kind = "exceed_context_size_error" if exc.code == "context_length_exceeded" else exc.error_type
    body = {"error": {"code": exc.status_code, "message": exc.message, "type": kind}}
    return JSONResponse(body, status_code=exc.status_code)


def is_native(body: dict) -> bool:
    """Whether an ``/embeddings`` body is llama-server's rather than OpenAI's."""
    return ("content" in body and "input" not in body) or body.get("pooling") == "none"


def parse_native(body: dict, *, max_inputs: int, default_truncate: str) -> EmbeddingRequest:
    """A llama-server ``/embedding`` body, checked (every client mistake a 4xx)."""
    key = "input" if body.get("input") is not None else "content"
    if body.get(key) is None:
        raise InvalidInputError("'content' (or 'input') is required", param="content")
    req = parse_body(body, max_inputs=max_inputs, default_truncate=default_truncate, key=key, allow_empty=True)
    return replace(req, per_token=per_token(body))


def native_response(rows: list[np.ndarray]) -> list:
    return [{"index": i, "embedding": np.atleast_2d(r).tolist()} for i, r in enumerate(rows)]


async def _native(call, body: dict) -> list:
    req = parse_native(body, max_inputs=call.options.max_inputs, default_truncate=call.options.truncate)
    worker = call.lookup(req.model)
    if req.per_token:
        rows, n_tokens = await worker.token_vectors(req)
    else:
        vectors, n_tokens = await worker.embed(req)
        rows = list(vectors)
    call.done(len(rows), n_tokens)
    return await asyncio.to_thread(native_response, rows)


async def embedding_route(call, raw: bytes) -> list:
    """POST /embedding: llama-server's native shape."""
    return await _native(call, json_object(raw))


async def embeddings_any_route(call, raw: bytes):
    """POST /embeddings: llama-server's native shape for its bodies, OpenAI's otherwise."""
    body = json_object(raw)
    if is_native(body):
        return await _native(call, body)
    return await openai_embeddings(call, body)

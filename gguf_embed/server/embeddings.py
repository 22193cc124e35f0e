"""OpenAI ``/v1/embeddings`` requests and responses: JSON in, validated values out.

No model logic: the parsed request names what to embed and how; the route hands it to the
model's worker and serialises what comes back.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError, check_text
from ..choices import ENCODING_FORMATS, INPUT_TYPES, TRUNCATE_POLICIES
from .prompts import MAX_TOKEN_ID, parse_prompts, split_prompts

__all__ = ["EmbeddingRequest", "parse_request", "parse_body", "embd_normalize", "per_token", "embeddings_route", "openai_embeddings", "parse_openai",
           "json_object",
           "optional_str", "MAX_TOKEN_ID"]

KNOWN_FIELDS = {"input", "model", "encoding_format", "dimensions", "user", "input_type", "instruction", "truncate",
                "late_chunking", "embd_normalize"}


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str | None
    texts: list[str] | None  # exactly one of texts / token_ids / mixed is set
    token_ids: list[list[int]] | None
    encoding_format: str
    dimensions: int | None
    input_type: str | None
    instruction: str | None
    truncate: str
    late_chunking: bool = False  # Jina's: the inputs are one document's chunks, in order
    batch_invariant: bool = False  # each text in a llama.cpp batch of its own (compressed codes need it)
    normalize: bool = True  # False: the pooled vectors as the model gives them (TEI's normalize=false)
    mixed: list | None = None  # llama-server's prompts: texts, and token-id lists with texts mixed in
    embd_normalize: int | None = None  # llama-server's scaling (heads.pooling.p_normalize); None: normalize's
    per_token: bool = False  # llama-server's pooling none: every token's vector

    @property
    def n_inputs(self) -> int:
        return len(next(x for x in (self.texts, self.token_ids, self.mixed) if x is not None))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def json_object(raw: bytes) -> dict:
    """A request body as a JSON object; anything else is a 400 (the one reader for every route)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise InvalidInputError("request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # bad JSON or UTF-8, or an integer of more than 4300 digits
        why = str(exc).partition("; use sys.")[0]
        raise InvalidInputError(f"request body is not valid JSON: {why[:200]}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("request body must be a JSON object")
    return body


def optional_str(body: dict, key: str) -> str | None:
    """``body[key]``: absent, null or a string UTF-8 can encode."""
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise InvalidInputError(f"'{key}' must be a string", param=key)
    return check_text(v, f"'{key}'", param=key)


def optional_flag(body: dict, key: str, default: bool) -> bool:
    """``body[key]``: absent or null (``default``), or true or false."""
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise InvalidInputError(f"'{key}' must be true or false", param=key)
    return v


def _choice(body: dict, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
    v = optional_str(body, key)
    if v is None:
        return default
    if v not in choices:
        raise InvalidInputError(f"'{key}' must be one of {', '.join(choices)} (got {v!r})", param=key)
    return v


def embd_normalize(body: dict) -> int | None:
    """llama-server's ``embd_normalize``: -1 none, 0 max-abs (int16 range), 1 taxicab, 2 euclidean (the
    default: None), p > 2 a p-norm."""
    value = body.get("embd_normalize")
    if value is None or value == 2:
        return None
    if not _is_int(value) or value < -1:
        raise InvalidInputError("'embd_normalize' must be an integer: -1 (none), 0 (max absolute, int16 range), "
                                "1 (taxicab), 2 (euclidean) or more (p-norm)", param="embd_normalize")
    return value


def per_token(body: dict) -> bool:
    """llama-server's ``"pooling": "none"`` (every token's vector); the model's own pooling otherwise."""
    value = body.get("pooling")
    if value is not None and value != "none":
        raise InvalidInputError("'pooling' can only be 'none' (every token's vector); without it the model's own "
                                "pooling is used", param="pooling")
    return value == "none"


def parse_body(body: dict, *, max_inputs: int, default_truncate: str, key: str = "input",
               allow_empty: bool = False) -> EmbeddingRequest:
    """A checked embeddings body (its inputs in ``body[key]``): every client mistake is a
    ``GGUFEmbedError`` with a 4xx status."""
    texts, token_ids, mixed = split_prompts(parse_prompts(body.get(key), key, max_inputs, allow_empty=allow_empty))
    dims = body.get("dimensions")
    if dims is not None and not _is_int(dims):
        raise InvalidInputError("'dimensions' must be an integer", param="dimensions")
    optional_str(body, "user")  # accepted and ignored
    late = optional_flag(body, "late_chunking", False)
    if late and texts is None:
        raise InvalidInputError("late_chunking takes text input (one document's chunks), not token ids",
                                param="late_chunking")
    return EmbeddingRequest(
        model=optional_str(body, "model"),
        texts=texts,
        token_ids=token_ids,
        mixed=mixed,
        encoding_format=_choice(body, "encoding_format", ENCODING_FORMATS, "float"),
        dimensions=dims,
        input_type=_choice(body, "input_type", INPUT_TYPES, None),
        instruction=optional_str(body, "instruction"),
        truncate=_choice(body, "truncate", TRUNCATE_POLICIES, default_truncate),
        late_chunking=late,
        embd_normalize=embd_normalize(body),
    )


def parse_request(raw: bytes, *, max_inputs: int, default_truncate: str) -> EmbeddingRequest:
    """An ``/v1/embeddings`` body, checked: every client mistake is a ``GGUFEmbedError`` with a 4xx status."""
    return parse_openai(json_object(raw), max_inputs=max_inputs, default_truncate=default_truncate)


def parse_openai(body: dict, *, max_inputs: int, default_truncate: str) -> EmbeddingRequest:
    """An ``/v1/embeddings`` body already read as JSON, checked."""
    if per_token(body):
        raise InvalidInputError("'pooling': 'none' gives every token's vector, which OpenAI's shape cannot carry; "
                                "use POST /embedding (llama-server's shape)", param="pooling")
    return parse_body(body, max_inputs=max_inputs, default_truncate=default_truncate)


def encode_vector(vec: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return vec.tolist()


def embedding_response(vectors: np.ndarray, model: str, fmt: str, n_tokens: int) -> dict:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, fmt)} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }


async def openai_embeddings(call, body: dict) -> dict:
    """An OpenAI embeddings body: parse, await the model's worker, serialise."""
    opts = call.options
    req = parse_openai(body, max_inputs=opts.max_inputs, default_truncate=opts.truncate)
    worker = call.lookup(req.model)
    vectors, n_tokens = await worker.embed(req)
    call.done(len(vectors), n_tokens)
    return await asyncio.to_thread(embedding_response, vectors, worker.name, req.encoding_format, n_tokens)


async def embeddings_route(call, raw: bytes) -> dict:
    """POST /v1/embeddings."""
    return await openai_embeddings(call, json_object(raw))

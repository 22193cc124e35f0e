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

from ..errors import InvalidInputError, TooManyInputsError, check_text
from ..choices import ENCODING_FORMATS, INPUT_TYPES, TRUNCATE_POLICIES

KNOWN_FIELDS = {"input", "model", "encoding_format", "dimensions", "user", "input_type", "instruction", "truncate",
                "late_chunking"}
MAX_TOKEN_ID = 2**31 - 1  # llama.cpp's token ids are int32; the model's vocabulary is checked later


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str | None
    texts: list[str] | None  # exactly one of texts / token_ids is set
    token_ids: list[list[int]] | None
    encoding_format: str
    dimensions: int | None
    input_type: str | None
    instruction: str | None
    truncate: str
    late_chunking: bool = False  # Jina's: the inputs are one document's chunks, in order
    batch_invariant: bool = False  # each text in a llama.cpp batch of its own (compressed codes need it)
    normalize: bool = True  # False: the pooled vectors as the model gives them (TEI's normalize=false)

    @property
    def n_inputs(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _fits_int64(v: Any) -> bool:
    """Token ids are checked against the vocabulary as int64 (which names the model's range); one
    beyond int64 is refused here."""
    return -2**63 <= v < 2**63


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


def _parse_input(value: Any, max_inputs: int) -> tuple[list[str] | None, list[list[int]] | None]:
    if value is None:
        raise InvalidInputError("'input' is required", param="input")
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, list):
        raise InvalidInputError("'input' must be a string, a list of strings or a list of token ids", param="input")
    if not value:
        raise InvalidInputError("'input' must not be empty", param="input")
    if len(value) > max_inputs:
        raise TooManyInputsError(f"'input' has {len(value)} items; at most {max_inputs} per request", param="input")
    if all(isinstance(v, str) for v in value):
        for i, v in enumerate(value):
            if not v:
                raise InvalidInputError(f"input {i} is an empty string", param="input")
            check_text(v, f"input {i}", param="input", index=i)
        return list(value), None
    if all(_is_int(v) for v in value):
        value = [value]
    if all(isinstance(v, list) for v in value):
        for i, ids in enumerate(value):
            if not ids:
                raise InvalidInputError(f"input {i} is an empty list of token ids", param="input")
            if not all(_is_int(t) for t in ids):
                raise InvalidInputError(f"input {i} must be a list of integer token ids", param="input")
            if not all(_fits_int64(t) for t in ids):
                raise InvalidInputError(f"input {i} has token ids outside 0..{MAX_TOKEN_ID}", param="input")
        return None, [list(v) for v in value]
    if any(v is None for v in value):
        raise InvalidInputError("'input' must not contain null items", param="input")
    raise InvalidInputError("'input' items must be all strings, all token ids or all lists of token ids", param="input")


def optional_str(body: dict, key: str) -> str | None:
    """``body[key]``: absent, null or a string UTF-8 can encode."""
    v = body.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise InvalidInputError(f"'{key}' must be a string", param=key)
    return check_text(v, f"'{key}'", param=key)


def _choice(body: dict, key: str, choices: tuple[str, ...], default: str | None) -> str | None:
    v = optional_str(body, key)
    if v is None:
        return default
    if v not in choices:
        raise InvalidInputError(f"'{key}' must be one of {', '.join(choices)} (got {v!r})", param=key)
    return v


def parse_request(raw: bytes, *, max_inputs: int, default_truncate: str) -> EmbeddingRequest:
    """An ``/v1/embeddings`` body, checked: every client mistake is a ``GGUFEmbedError`` with a 4xx status."""
    body = json_object(raw)
    texts, token_ids = _parse_input(body.get("input"), max_inputs)
    dims = body.get("dimensions")
    if dims is not None and not _is_int(dims):
        raise InvalidInputError("'dimensions' must be an integer", param="dimensions")
    optional_str(body, "user")  # accepted and ignored
    late = body.get("late_chunking")
    if late is not None and not isinstance(late, bool):
        raise InvalidInputError("'late_chunking' must be true or false", param="late_chunking")
    if late and texts is None:
        raise InvalidInputError("late_chunking takes text input (one document's chunks), not token ids",
                                param="late_chunking")
    return EmbeddingRequest(
        model=optional_str(body, "model"),
        texts=texts,
        token_ids=token_ids,
        encoding_format=_choice(body, "encoding_format", ENCODING_FORMATS, "float"),
        dimensions=dims,
        input_type=_choice(body, "input_type", INPUT_TYPES, None),
        instruction=optional_str(body, "instruction"),
        truncate=_choice(body, "truncate", TRUNCATE_POLICIES, default_truncate),
        late_chunking=bool(late),
    )


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


async def embeddings_route(call, raw: bytes) -> dict:
    """POST /v1/embeddings: parse, await the model's worker, serialise."""
    opts = call.options
    req = parse_request(raw, max_inputs=opts.max_inputs, default_truncate=opts.truncate)
    worker = call.lookup(req.model)
    vectors, n_tokens = await worker.embed(req)
    call.done(len(vectors), n_tokens)
    return await asyncio.to_thread(embedding_response, vectors, worker.name, req.encoding_format, n_tokens)

"""Cohere's embed API: ``/v2/embed`` and ``/v1/embed`` (float, int8, uint8, binary, ubinary, base64).

``texts``, ``input_type`` (search_query: the model's query prompt; search_document, classification
and clustering: its document prompt), ``embedding_types``, ``truncate`` (NONE / START / END, Cohere's
default END), ``output_dimension`` (a Matryoshka cut) and ``model``. int8 and uint8 codes are
symmetric, one scale fixed per model (``store.codes``): raw int8 dot products rank like the floats, as
a vector store scores them (uint8 is int8 + 128: by Euclidean distance). A request for codes runs
each text in a llama.cpp batch of its own, so a text's codes do not depend on the request it came in
or what it was batched with. Client mistakes are 4xx in Cohere's error shape, ``{"id": ..., "message": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidInputError, TooManyInputsError, check_text
from ..heads.precision import check_precision
from ..choices import COHERE_EMBEDDING_TYPES, COHERE_INPUT_TYPES, COHERE_TRUNCATE, ENCODING_FORMATS
from .embeddings import EmbeddingRequest, json_object, optional_str

__all__ = ["CohereEmbedRequest", "parse_cohere_embed", "cohere_embed_response", "cohere_embed_route"]

UNSUPPORTED = ("images", "inputs")  # gguf-embed embeds text


@dataclass(frozen=True)
class CohereEmbedRequest:
    model: str | None
    texts: list[str]
    input_type: str  # gguf-embed's: query or document
    types: tuple[str, ...] | None  # None: v1 without embedding_types (a plain list of floats)
    truncate: str
    dimensions: int | None
    max_tokens: int | None
    version: str  # "v1" or "v2"


def _texts(body: dict, max_inputs: int) -> list[str]:
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts:
        raise InvalidInputError("'texts' is required: a non-empty list of strings", param="texts")
    if len(texts) > max_inputs:
        raise TooManyInputsError(f"'texts' has {len(texts)} items; at most {max_inputs} per request", param="texts")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t:
            raise InvalidInputError(f"texts[{i}] must be a non-empty string", param="texts")
        check_text(t, f"texts[{i}]", param="texts", index=i)
    return list(texts)


def _types(body: dict, version: str) -> tuple[str, ...] | None:
    raw = body.get("embedding_types")
    if raw is None:
        return ("float",) if version == "v2" else None
    if not isinstance(raw, list) or not raw or not all(isinstance(t, str) for t in raw):
        raise InvalidInputError("'embedding_types' must be a non-empty list of strings", param="embedding_types")
    wrong = [t for t in raw if t not in COHERE_EMBEDDING_TYPES]
    if wrong:
        raise InvalidInputError(f"embedding type {wrong[0]!r} is not one of {', '.join(COHERE_EMBEDDING_TYPES)}",
                                param="embedding_types")
    return tuple(dict.fromkeys(raw))


def _int(body: dict, key: str) -> int | None:
    v = body.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise InvalidInputError(f"'{key}' must be a positive integer", param=key)
    return v


def parse_cohere_embed(raw: bytes, *, version: str, max_inputs: int) -> CohereEmbedRequest:
    """A Cohere embed body, checked: every client mistake is a ``GGUFEmbedError`` with a 4xx status."""
    body = json_object(raw)
    for key in UNSUPPORTED:
        if body.get(key) is not None:
            raise InvalidInputError(f"'{key}' is not supported: gguf-embed embeds 'texts'", param=key)
    input_type = optional_str(body, "input_type") or "search_document"
    if input_type not in COHERE_INPUT_TYPES:
        raise InvalidInputError(f"'input_type' must be one of {', '.join(COHERE_INPUT_TYPES)} (got {input_type!r})",
                                param="input_type")
    truncate = (optional_str(body, "truncate") or "END").upper()
    if truncate not in COHERE_TRUNCATE:
        raise InvalidInputError(f"'truncate' must be one of {', '.join(COHERE_TRUNCATE)}", param="truncate")
    return CohereEmbedRequest(optional_str(body, "model"), _texts(body, max_inputs), COHERE_INPUT_TYPES[input_type],
                              _types(body, version), COHERE_TRUNCATE[truncate], _int(body, "output_dimension"),
                              _int(body, "max_tokens"), version)


def _encoded(kind: str, vectors: np.ndarray, quantizers: dict) -> list:
    if kind == "float":
        return vectors.tolist()
    if kind == "base64":
        return [base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii") for v in vectors]
    return quantizers[kind](vectors).tolist()


def cohere_embed_response(req: CohereEmbedRequest, vectors: np.ndarray, quantizers: dict, n_tokens: int) -> dict:
    meta = {"api_version": {"version": req.version[1:]}, "billed_units": {"input_tokens": n_tokens}}
    body: dict[str, Any] = {"id": str(uuid.uuid4())}
    if req.types is None:
        body.update(response_type="embeddings_floats", embeddings=vectors.tolist())
    else:
        body.update(response_type="embeddings_by_type",
                    embeddings={kind: _encoded(kind, vectors, quantizers) for kind in req.types})
    body.update(texts=req.texts, meta=meta)
    return body


async def cohere_embed_route(call, raw: bytes, version: str) -> dict:
    """POST /v2/embed, /v1/embed: parse, embed through the model's worker, compress, serialise."""
    req = parse_cohere_embed(raw, version=version, max_inputs=call.options.max_inputs)
    worker = call.lookup(req.model)
    emb = worker.embedder
    if req.max_tokens is not None and req.max_tokens < emb.max_tokens:
        raise InvalidInputError(f"'max_tokens' below the model's limit of {emb.max_tokens} is not supported "
                                "(leave it out)", param="max_tokens")
    emb.check_dimensions(req.dimensions)
    dims = req.dimensions or emb.dimensions
    codes = [t for t in (req.types or ()) if t not in ENCODING_FORMATS]  # the rest are compressed
    for kind in codes:
        check_precision(kind, dims, param="embedding_types")
    vectors, n_tokens = await worker.embed(EmbeddingRequest(
        model=req.model, texts=req.texts, token_ids=None, encoding_format="float", dimensions=req.dimensions,
        input_type=req.input_type, instruction=None, truncate=req.truncate, batch_invariant=bool(codes)))
    quantizers = {kind: await worker.quantizer(kind, req.dimensions) for kind in codes}
    call.done(len(vectors), n_tokens)
    return await asyncio.to_thread(cohere_embed_response, req, vectors, quantizers, n_tokens)

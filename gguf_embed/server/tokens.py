"""TEI's per-token routes: ``POST /embed_sparse`` (bge-m3's lexical weights,
``[[{"index": token_id, "value": weight}, ...], ...]`` per input, ids ascending) and
``POST /embed_all`` (every token's vector, ``[[[float, ...] per token] per input]``).

The body is TEI's: ``inputs`` (a string or a list of strings), ``truncate`` (true: cut over-long
inputs at the end; false, the default: refuse them; or one of gguf-embed's policies),
``normalize`` (``/embed_all``: true for L2-normalised token vectors; by default they are raw, as
TEI returns them), plus ``model`` when several are served. The encoder runs once per request with every token's state; the outputs are
computed in numpy. Every client mistake is a 4xx in the same envelope as ``/v1/embeddings``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError, TooManyInputsError, check_text
from ..choices import TRUNCATE_POLICIES
from .embeddings import json_object, optional_str

__all__ = ["TokenRequest", "parse_token_request", "embed_sparse_route", "embed_all_route", "tei_inputs",
           "tei_truncate"]


@dataclass(frozen=True)
class TokenRequest:
    model: str | None
    texts: list[str]
    truncate: str
    normalize: bool


def tei_inputs(value: Any, max_inputs: int) -> list[str]:
    if value is None:
        raise InvalidInputError("'inputs' is required: a string or a list of strings", param="inputs")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InvalidInputError("'inputs' must be a string or a list of strings", param="inputs")
    if not texts:
        raise InvalidInputError("'inputs' must not be empty", param="inputs")
    if len(texts) > max_inputs:
        raise TooManyInputsError(f"'inputs' has {len(texts)} items; at most {max_inputs} per request", param="inputs")
    for i, t in enumerate(texts):
        if not t:
            raise InvalidInputError(f"input {i} is an empty string", param="inputs")
        check_text(t, f"input {i}", param="inputs", index=i)
    return list(texts)


def tei_truncate(value: Any, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool):  # TEI's form
        return "end" if value else "error"
    if isinstance(value, str) and value in TRUNCATE_POLICIES:
        return value
    raise InvalidInputError(f"'truncate' must be true, false or one of {', '.join(TRUNCATE_POLICIES)}",
                            param="truncate")


def parse_token_request(raw: bytes, *, max_inputs: int, default_truncate: str) -> TokenRequest:
    body = json_object(raw)
    normalize = body.get("normalize", False)
    if not isinstance(normalize, bool):
        raise InvalidInputError("'normalize' must be true or false", param="normalize")
    return TokenRequest(optional_str(body, "model"), tei_inputs(body.get("inputs"), max_inputs),
                        tei_truncate(body.get("truncate"), default_truncate), normalize)


async def _run(call, raw: bytes, output: str):
    opts = call.options
    req = parse_token_request(raw, max_inputs=opts.max_inputs, default_truncate=opts.truncate)
    worker = call.lookup(req.model)
    res = await worker.embed_outputs(req.texts, (output,), truncate=req.truncate, normalize=req.normalize)
    call.done(len(req.texts), int(res.token_counts.sum()))
    return res


async def embed_sparse_route(call, raw: bytes) -> list:
    """POST /embed_sparse: TEI's sparse shape, one list per input."""
    res = await _run(call, raw, "sparse")
    return await asyncio.to_thread(lambda: [s.to_tei() for s in res.sparse])


async def embed_all_route(call, raw: bytes) -> list:
    """POST /embed_all: every token's vector (special tokens included), one matrix per input."""
    res = await _run(call, raw, "tokens")
    return await asyncio.to_thread(lambda: [t.vectors.tolist() for t in res.token_vectors])

"""Rerank requests and responses: ``/v1/rerank`` and ``/rerank`` (Jina / Cohere v1), ``/v2/rerank``
(Cohere v2) and TEI's shape (a body with ``texts``) on any of them.

JSON in, JSON out: the pairs are tokenised by the model's ``Reranker``, scored through the
model's worker (batched with every other request) and sorted best first. Every client
mistake is a 4xx in the same error envelope as ``/v1/embeddings``, or in TEI's for a TEI-shaped body.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import GGUFEmbedError, InvalidInputError, TooManyInputsError, check_text
from ..reranker import RerankResult, check_top_n
from ..choices import TRUNCATE_POLICIES
from .embeddings import json_object, optional_flag, optional_str

__all__ = ["RerankRequest", "parse_rerank", "rerank_response", "rerank_route"]


@dataclass(frozen=True)
class RerankRequest:
    model: str | None
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool
    instruction: str | None
    raw_scores: bool
    truncate: str | None  # None: the server's default
    shape: str  # "v1" (Jina / Cohere v1), "v2" (Cohere v2) or "tei"


def _documents(raw: Any, field: str, max_documents: int) -> list[str]:
    if raw is None:
        raise InvalidInputError(f"'{field}' is required: a list of strings", param=field)
    if not isinstance(raw, list):
        raise InvalidInputError(f"'{field}' must be a list of strings", param=field)
    if not raw:
        raise InvalidInputError(f"'{field}' must not be empty", param=field)
    if len(raw) > max_documents:
        raise TooManyInputsError(f"{len(raw)} documents; the limit per request is {max_documents}", param=field)
    docs = []
    for i, d in enumerate(raw):
        if isinstance(d, dict) and isinstance(d.get("text"), str):
            d = d["text"]
        if not isinstance(d, str):
            raise InvalidInputError(f"{field}[{i}] must be a string or an object with a 'text' string", param=field)
        docs.append(check_text(d, f"{field}[{i}]", param=field, index=i))
    return docs


def parse_rerank(raw: bytes, *, shape: str, max_documents: int) -> RerankRequest:
    """A request body in any of the supported shapes; ``shape`` is the route's ("v1" or "v2")."""
    body = json_object(raw)
    model = optional_str(body, "model")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("'query' is required and must be a non-empty string", param="query")
    check_text(query, "'query'", param="query")
    instruction = optional_str(body, "instruction")
    if "texts" in body and "documents" not in body:  # Text Embeddings Inference
        truncate = optional_flag(body, "truncate", False)
        direction = body.get("truncation_direction", "Right")
        if direction not in ("Right", "Left", "right", "left"):
            raise InvalidInputError("'truncation_direction' must be 'Right' or 'Left'", param="truncation_direction")
        check_top_n(body.get("top_n"))
        return RerankRequest(
            model, query, _documents(body["texts"], "texts", max_documents), body.get("top_n"),
            optional_flag(body, "return_text", False), instruction, optional_flag(body, "raw_scores", False),
            ("end" if direction.lower() == "right" else "start") if truncate else "error", "tei",
        )
    top_n = body.get("top_n")
    check_top_n(top_n)
    truncate = body.get("truncate")
    if truncate is not None and truncate not in (*TRUNCATE_POLICIES, "END", "START", "NONE"):
        raise InvalidInputError(f"'truncate' must be one of {', '.join(TRUNCATE_POLICIES)}", param="truncate")
    truncate = {"END": "end", "START": "start", "NONE": "error"}.get(truncate, truncate)
    return RerankRequest(
        model, query, _documents(body.get("documents"), "documents", max_documents), top_n,
        optional_flag(body, "return_documents", shape == "v1"), instruction,
        optional_flag(body, "raw_scores", False),
        truncate, shape,
    )


def rerank_response(req: RerankRequest, result: RerankResult, model: str) -> Any:
    ranked = result.ranked(req.top_n)
    if req.shape == "tei":
        out = []
        for i, s in ranked:
            item = {"index": i, "score": s}
            if req.return_documents:
                item["text"] = req.documents[i]
            out.append(item)
        return out
    results = []
    for i, s in ranked:
        item: dict[str, Any] = {"index": i, "relevance_score": s}
        if req.return_documents:
            item["document"] = {"text": req.documents[i]}
        results.append(item)
    body: dict[str, Any] = {"id": str(uuid.uuid4()), "results": results}
    units = {"billed_units": {"search_units": 1}}
    if req.shape == "v2":
        body["meta"] = units
        return body
    n = result.total_tokens
    body.update({"model": model, "object": "list", "usage": {"prompt_tokens": n, "total_tokens": n}, "meta": units})
    return body


def _is_tei(raw: bytes) -> bool:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and "texts" in body and "documents" not in body


async def rerank_route(call, raw: bytes, shape: str):
    """POST /v1/rerank, /v2/rerank (and TEI's shape on either): parse, await the worker, serialise. A
    mistake in a TEI-shaped body is marked ``api = "tei"``, for the app to answer in TEI's error shape."""
    try:
        req = parse_rerank(raw, shape=shape, max_documents=call.options.max_inputs)
        worker = call.lookup(req.model, "rerank")
        result = await worker.rerank(req, call.options.rerank_truncate)
    except GGUFEmbedError as exc:
        exc.api = "tei" if _is_tei(raw) else None
        raise
    call.done(len(req.documents), result.total_tokens)
    return rerank_response(req, result, worker.name)

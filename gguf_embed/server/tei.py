"""Text Embeddings Inference's API: ``POST /embed`` (also ``POST /``, where
``huggingface_hub.InferenceClient(URL).feature_extraction`` posts) and ``GET /info``.

``/embed`` takes TEI's body: ``inputs`` (a string or a list of strings), ``normalize`` (default
true; false gives the pooled vectors as the model computes them), ``truncate`` (false, the
default, refuses an over-long input; true cuts it), ``truncation_direction`` (``right``, the
default, keeps the start; ``left`` keeps the end), ``prompt_name`` (``query`` or ``document``: the
model's prompt of that name), ``dimensions`` (a Matryoshka cut) and, when several models are
served, ``model``. It answers a bare list of vectors. ``/tokenize`` (``inputs``,
``add_special_tokens``, ``prompt_name``) answers each input's tokens as they are embedded, without
character offsets; ``/decode`` (``ids``, ``skip_special_tokens``) their text; ``/predict`` scores text pairs
with a served reranker (cross-encoder or Qwen3-Reranker): ``inputs`` a pair ``[a, b]`` or a list of pairs,
``raw_scores`` (default false: the probability), ``truncate``/``truncation_direction``; it answers
``[{"score", "label"}]`` per pair (a list of those for a list of pairs). A single text is refused: every
classifier this server runs scores pairs. TEI's other routes on this server:
``/rerank`` (``rerank.py``), ``/embed_sparse`` and ``/embed_all`` (``tokens.py``). Every client
mistake is a 4xx in TEI's error shape, ``{"error": "...", "error_type": "Validation"}``.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi.responses import JSONResponse

from ..choices import INPUT_TYPES
from ..errors import GGUFEmbedError, InvalidInputError, TooManyInputsError, check_text
from .embeddings import EmbeddingRequest, json_object, optional_flag, optional_str
from .rerank import RerankRequest
from .ollama import quantization
from .tokens import tei_inputs, tei_truncate

__all__ = ["parse_tei_embed", "parse_predict", "tei_error", "ROUTES"]

DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def tei_error(exc: GGUFEmbedError) -> JSONResponse:
    """TEI's error shape: ``{"error": ..., "error_type": ...}``, the type as TEI names its kinds."""
    if exc.status_code == 503:
        kind = "Unhealthy"
    elif exc.status_code >= 500:
        kind = "Backend"
    elif exc.code == "invalid_text":
        kind = "Tokenizer"
    else:
        kind = "Validation"
    return JSONResponse({"error": exc.message, "error_type": kind}, status_code=exc.status_code)


def _truncation(body: dict, default: str) -> str:
    policy = tei_truncate(body.get("truncate"), default)
    direction = body.get("truncation_direction")
    if direction is None:
        return policy
    if not isinstance(direction, str) or direction.lower() not in ("left", "right"):
        raise InvalidInputError("'truncation_direction' must be 'right' or 'left'", param="truncation_direction")
    return "start" if policy == "end" and direction.lower() == "left" else policy


def parse_tei_embed(raw: bytes, *, max_inputs: int, default_truncate: str) -> EmbeddingRequest:
    """A TEI ``/embed`` body, checked: every client mistake is a ``GGUFEmbedError`` with a 4xx status."""
    body = json_object(raw)
    prompt = _prompt(body)
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise InvalidInputError("'dimensions' must be a positive integer", param="dimensions")
    return EmbeddingRequest(
        model=optional_str(body, "model"), texts=tei_inputs(body.get("inputs"), max_inputs), token_ids=None,
        encoding_format="float", dimensions=dims, input_type=prompt, instruction=None,
        truncate=_truncation(body, default_truncate), normalize=optional_flag(body, "normalize", True),
    )


async def embed_route(call, raw: bytes) -> list:
    """POST /embed (and POST /): a bare list of vectors."""
    req = parse_tei_embed(raw, max_inputs=call.options.max_inputs, default_truncate=call.options.truncate)
    worker = call.lookup(req.model)
    vectors, n_tokens = await worker.embed(req)
    call.done(len(vectors), n_tokens)
    return await asyncio.to_thread(vectors.tolist)


def _model_type(worker) -> dict[str, Any]:
    if worker.task == "rerank":
        return {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    return {"embedding": {"pooling": worker.embedder.info.pooling}}


async def info_route(call, raw: bytes) -> dict:
    """GET /info: the served model (the first embedding model when several are served), as TEI describes it."""
    models = list(call.state.models.values())
    worker = next((w for w in models if w.task == "embed"), models[0])
    info, opts = worker.embedder.info, call.options
    quant = quantization(info)
    return {
        "model_id": worker.name, "model_sha": None, "model_dtype": DTYPES.get(quant, quant.lower()),
        "model_type": _model_type(worker), "max_concurrent_requests": 512,
        "max_input_length": worker.embedder.max_tokens, "max_batch_tokens": opts.max_batch_tokens,
        "max_batch_requests": None, "max_client_batch_size": opts.max_inputs,
        "auto_truncate": opts.truncate != "error", "tokenization_workers": 1, "version": _version(),
        "sha": None, "docker_label": None, "prompts": dict(info.prompts) or None,
    }


def _version() -> str:
    try:
        return version("gguf-embed")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def _prompt(body: dict) -> str | None:
    prompt = optional_str(body, "prompt_name")
    if prompt is not None and prompt not in INPUT_TYPES:
        raise InvalidInputError(f"'prompt_name' must be one of {', '.join(INPUT_TYPES)} (got {prompt!r})",
                                param="prompt_name")
    return prompt


async def tokenize_route(call, raw: bytes) -> list:
    """POST /tokenize: each input's tokens, ``{"id", "text", "special", "start", "stop"}`` (no offsets)."""
    body = json_object(raw)
    texts = tei_inputs(body.get("inputs"), call.options.max_inputs)
    add_special, prompt = optional_flag(body, "add_special_tokens", True), _prompt(body)
    worker = call.lookup(optional_str(body, "model"))
    seqs = await worker.tokens(texts, add_special=add_special, input_type=prompt,
                               truncate=_truncation(body, call.options.truncate))
    call.done(len(texts), sum(len(s) for s in seqs))
    return [[{"id": i, "text": text, "special": special, "start": None, "stop": None} for i, text, special in s]
            for s in seqs]


def _ids(value: Any) -> list[list[int]]:
    seqs = [value] if isinstance(value, list) and value and all(_is_id(v) for v in value) else value
    if not isinstance(seqs, list) or not seqs or not all(
            isinstance(s, list) and all(_is_id(v) for v in s) for s in seqs):
        raise InvalidInputError("'ids' must be a list of token ids or a list of such lists", param="ids")
    return seqs


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


async def decode_route(call, raw: bytes) -> list:
    """POST /decode: the text of each list of token ids."""
    body = json_object(raw)
    seqs = _ids(body.get("ids"))
    skip = optional_flag(body, "skip_special_tokens", True)
    worker = call.lookup(optional_str(body, "model"))
    texts = await worker.decode(seqs, special=not skip)
    call.done(len(seqs), sum(len(s) for s in seqs))
    return texts


def _pair(value: Any, i: int | None) -> tuple[str, str]:
    where = "'inputs'" if i is None else f"input {i}"
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(x, str) and x for x in value)):
        raise InvalidInputError(f"{where} must be a pair of non-empty strings [text_a, text_b]: the classifiers "
                                "this server runs (rerankers) score pairs", param="inputs")
    return (check_text(value[0], f"{where}'s first text", param="inputs", index=i),
            check_text(value[1], f"{where}'s second text", param="inputs", index=i))


def parse_predict(raw: bytes, *, max_inputs: int) -> tuple[list[tuple[str, str]], bool, dict]:
    """(pairs, whether a list of pairs was sent, the body): TEI's ``/predict`` inputs, checked."""
    body = json_object(raw)
    value = body.get("inputs")
    batched = isinstance(value, list) and bool(value) and all(isinstance(x, list) for x in value)
    pairs = [_pair(x, i) for i, x in enumerate(value)] if batched else [_pair(value, None)]
    if len(pairs) > max_inputs:
        raise TooManyInputsError(f"'inputs' has {len(pairs)} pairs; at most {max_inputs} per request", param="inputs")
    return pairs, batched, body


async def predict_route(call, raw: bytes) -> list:
    """POST /predict: each pair's score from a served reranker, with TEI's single label."""
    pairs, batched, body = parse_predict(raw, max_inputs=call.options.max_inputs)
    raw_scores, truncate = optional_flag(body, "raw_scores", False), _truncation(body, "end")
    worker = call.lookup(optional_str(body, "model"), task="rerank")
    scores, tokens = [0.0] * len(pairs), 0
    by_query: dict[str, list[int]] = {}
    for i, (a, _) in enumerate(pairs):  # one rerank call per first text, its pairs' order kept
        by_query.setdefault(a, []).append(i)
    for query, at in by_query.items():
        req = RerankRequest(None, query, [pairs[i][1] for i in at], None, False, None, raw_scores, truncate, "tei")
        res = await worker.rerank(req, truncate)
        tokens += res.total_tokens
        for i, s in zip(at, res.scores.tolist()):
            scores[i] = float(s)
    call.done(len(pairs), tokens)
    out = [[{"score": s, "label": "LABEL_0"}] for s in scores]
    return out if batched else out[0]


# (methods, path, handler): registered by the app with TEI's error shape
ROUTES = [
    (["POST"], "/embed", embed_route),
    (["POST"], "/", embed_route),
    (["GET"], "/info", info_route),
    (["POST"], "/tokenize", tokenize_route),
    (["POST"], "/decode", decode_route),
    (["POST"], "/predict", predict_route),
]

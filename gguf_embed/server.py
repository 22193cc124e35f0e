"""A laptop-local HTTP endpoint that answers like OpenAI's ``/v1/embeddings``.

``create_app(models, ...)`` builds the app; models load at start-up (``/health`` says 503
until they are ready), each gets one worker that owns its llama.cpp context, and every
error a client can cause comes back as a 4xx in OpenAI's error envelope.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api import embedding_response, parse_request
from .batcher import Batcher
from .embedder import Embedder
from .errors import (
    AuthenticationError,
    GGUFEmbedError,
    InvalidInputError,
    ModelNotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from .metrics import Metrics
from .pooling import postprocess
from .reranker import Reranker
from .server_rerank import add_rerank_routes

__all__ = ["create_app"]

log = logging.getLogger("gguf_embed.server")
ModelSource = Union[Embedder, Callable[[], Embedder]]


@dataclass
class Served:
    name: str
    embedder: Embedder
    batcher: Batcher
    owned: bool  # loaded by the app, so closed by it
    reranker: Any = None  # a Reranker when the model's task is rerank


@dataclass
class State:
    metrics: Metrics = field(default_factory=Metrics)
    models: dict[str, Served] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    load_error: str | None = None

    def lookup(self, name: str | None) -> Served:
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise InvalidInputError(f"'model' is required; served models: {', '.join(self.models)}", param="model")
        key = self.aliases.get(name)
        if key is None:
            raise ModelNotFoundError(
                f"model {name!r} is not served here; served models: {', '.join(self.models)}", param="model"
            )
        return self.models[key]


def _error_response(exc: GGUFEmbedError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status_code)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    models: Sequence[ModelSource],
    *,
    api_key: str | None = None,
    max_batch_tokens: int = 2048,
    max_inputs: int = 2048,
    truncate: str = "error",
    max_body_bytes: int = 32 * 2**20,
    cors_origins: Sequence[str] = (),
    cache: str | Path | None = None,
) -> FastAPI:
    """An app serving ``models`` (Embedders, or callables that load one at start-up); ``cache``: a vector cache file."""
    if not models:
        raise ValueError("at least one model is needed")
    state = State()
    key = api_key.encode() if api_key else None
    if cache is not None:
        from .corpus.serving import ServerCache

        cache = ServerCache(cache)

    def load_all() -> None:
        for source in models:
            source = source.embedder if isinstance(source, Reranker) else source
            owned = not isinstance(source, Embedder)
            emb = source() if owned else source
            name = emb.name
            if name in state.models:
                name = emb.info.path.stem
            batcher = Batcher(emb, max_batch_tokens=max_batch_tokens, on_batch=state.metrics.batch)
            reranker = Reranker.from_embedder(emb) if emb.info.task == "rerank" else None
            state.models[name] = Served(name, emb, batcher, owned, reranker)
            path = Path(emb.info.path)
            for alias in (name, path.name, path.stem, str(path)):
                state.aliases.setdefault(alias, name)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async def load():
            try:
                await asyncio.to_thread(load_all)
                state.ready = True
                log.info("serving %s", ", ".join(state.models))
            except Exception as exc:  # reported by /health; the process stays up to say so
                state.load_error = str(exc)
                log.error("could not load models: %s", exc)

        task = asyncio.create_task(load())
        try:
            yield
        finally:
            task.cancel()
            for served in state.models.values():
                served.batcher.close()
                if served.owned:
                    served.embedder.close()

    app = FastAPI(title="gguf-embed", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gguf_embed = state
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    def check_auth(request: Request) -> None:
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key):
            raise AuthenticationError("missing or wrong API key (send 'Authorization: Bearer KEY')")

    def check_ready() -> None:
        if not state.ready:
            raise ServiceUnavailableError(
                f"models failed to load: {state.load_error}" if state.load_error else "models are still loading"
            )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
        err = GGUFEmbedError(f"{request.method} {request.url.path}: {exc.detail}")
        err.status_code, err.code = exc.status_code, kind
        return _error_response(err)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("internal error")
        state.metrics.error("internal")
        return JSONResponse({"error": {"message": "internal server error", "type": "server_error",
                                       "param": None, "code": "internal_error"}}, status_code=500)

    async def embeddings(request: Request):
        t0 = time.perf_counter()
        model_name = "-"
        try:
            check_auth(request)
            check_ready()
            raw = await _read_body(request, max_body_bytes)
            req = parse_request(raw, max_inputs=max_inputs, default_truncate=truncate)
            served = state.lookup(req.model)
            model_name, emb = served.name, served.embedder
            if served.reranker is not None:
                raise InvalidInputError(f"model {served.name} is a reranker; use /v1/rerank", param="model")
            emb.check_dimensions(req.dimensions)
            if req.texts is not None:
                seqs = await run_in_threadpool(
                    emb.tokenize, req.texts, input_type=req.input_type, instruction=req.instruction,
                    truncate=req.truncate,
                )
            else:
                if req.input_type or req.instruction:
                    raise InvalidInputError("input_type and instruction apply to text input, not token ids",
                                            param="input_type" if req.input_type else "instruction")
                seqs = [emb.frame_tokens(ids, i, req.truncate) for i, ids in enumerate(req.token_ids)]
            if cache is not None and req.texts is not None:
                vectors = await cache.embed(emb, served.batcher.embed, req.texts, seqs, input_type=req.input_type,
                                            instruction=req.instruction, dimensions=req.dimensions,
                                            truncate=req.truncate)
            else:
                vectors = postprocess(await served.batcher.embed(seqs), req.dimensions, True)
            n_tokens = int(sum(len(s) for s in seqs))
            body = await run_in_threadpool(embedding_response, vectors, served.name, req.encoding_format, n_tokens)
            state.metrics.request(model_name, 200, time.perf_counter() - t0, len(seqs), n_tokens)
            return JSONResponse(body)
        except GGUFEmbedError as exc:
            state.metrics.error(exc.code or "invalid_request")
            state.metrics.request(model_name, exc.status_code, time.perf_counter() - t0)
            return _error_response(exc)

    app.add_api_route("/v1/embeddings", embeddings, methods=["POST"])
    app.add_api_route("/embeddings", embeddings, methods=["POST"])

    async def list_models(request: Request):
        try:
            check_auth(request)
            check_ready()
        except GGUFEmbedError as exc:
            return _error_response(exc)
        data = [
            {"id": s.name, "object": "model", "created": 0, "owned_by": "gguf-embed",
             "dimensions": s.embedder.dimensions, "max_tokens": s.embedder.max_tokens,
             "task": s.embedder.info.task}
            for s in state.models.values()
        ]
        return {"object": "list", "data": data}

    def guard(request: Request) -> None:
        check_auth(request)
        check_ready()

    add_rerank_routes(app, state, guard=guard, read_body=lambda r: _read_body(r, max_body_bytes),
                      error_response=_error_response, max_documents=max_inputs)

    app.add_api_route("/v1/models", list_models, methods=["GET"])
    app.add_api_route("/models", list_models, methods=["GET"])

    @app.get("/health")
    async def health():
        if state.ready:
            return {"status": "ok", "models": list(state.models)}
        status = "error" if state.load_error else "loading"
        return JSONResponse({"status": status, "error": state.load_error}, status_code=503)

    @app.get("/metrics")
    async def metrics(request: Request):
        try:
            check_auth(request)
        except GGUFEmbedError as exc:
            return _error_response(exc)
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    return app

"""The app factory: models load at start-up (``/health`` says 503 until they are ready), each gets
one worker that owns its llama.cpp session, and every error a client can cause comes back as
a 4xx in OpenAI's error envelope (the one error table: ``GGUFEmbedError.status_code``)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    AuthenticationError,
    GGUFEmbedError,
    InvalidInputError,
    ModelNotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)
from ..model.sources import OLLAMA_HOST, OLLAMA_NAMESPACE
from . import llama, ollama, tei
from .cohere import cohere_embed_route
from .embeddings import embeddings_route
from .metrics import Metrics
from .rerank import rerank_route
from .tokens import embed_all_route, embed_sparse_route
from .worker import ServerCache, Worker, load_worker

__all__ = ["create_app", "ServerOptions"]

log = logging.getLogger("gguf_embed.server")
OLLAMA_LIBRARY = f"{OLLAMA_HOST}/{OLLAMA_NAMESPACE}/"
INTERNAL_ERROR = {"error": {"message": "internal server error", "type": "server_error", "param": None,
                            "code": "internal_error"}}


@dataclass(frozen=True)
class ServerOptions:
    api_key: str | None = None
    max_batch_tokens: int = 2048
    max_inputs: int = 2048
    truncate: str = "error"  # embeddings' default for over-long inputs
    rerank_truncate: str = "end"
    max_body_bytes: int = 32 * 2**20
    cors_origins: tuple[str, ...] = ()
    cache: str | Path | None = None
    strict_model_names: bool = False  # a request's model must name a served model or an alias
    aliases: tuple[tuple[str, str], ...] = ()  # (NAME, MODEL) pairs: --alias NAME=MODEL


def model_key(name: str) -> str:
    """A model name as Ollama compares them: case-insensitive, ``library/NAME`` and ``NAME:latest`` as ``NAME``."""
    key = name.strip().lower()
    for prefix in (OLLAMA_LIBRARY, "library/"):
        key = key[len(prefix):] if key.startswith(prefix) else key
    return key[:-len(":latest")] if key.endswith(":latest") else key


@dataclass
class State:
    metrics: Metrics = field(default_factory=Metrics)
    models: dict[str, Worker] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    ready: bool = False
    load_error: str | None = None

    def find(self, name: str) -> str | None:
        """The served model ``name`` names (its name, file name, path, an alias, or Ollama's forms of these)."""
        return self.aliases.get(name) or self.aliases.get(model_key(name))

    def lookup(self, name: str | None, task: str | None = "embed", strict: bool = False) -> Worker:
        """The worker for a request's ``model``. When one served model does ``task`` (None: any task), a
        missing name, and unless ``strict`` any name, reaches it."""
        key = self.find(name) if name is not None else None
        if key is not None:
            return self.models[key]
        of_task = [w for w in self.models.values() if task is None or w.task == task]
        if len(of_task) == 1 and (name is None or not strict):
            return of_task[0]
        if name is None:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise InvalidInputError(f"'model' is required; served models: {', '.join(self.models)}", param="model")
        raise ModelNotFoundError(
            f"model {name!r} is not served here; served models: {', '.join(self.models)}", param="model"
        )

    def add(self, worker: Worker, names: Sequence[str] = ()) -> None:
        name = worker.name
        if name in self.models:
            name = worker.name = Path(worker.embedder.info.path).stem
        self.models[name] = worker
        path = Path(worker.embedder.info.path)
        for alias in (name, path.name, path.stem, str(path), *names):
            self.aliases.setdefault(alias, name)
            self.aliases.setdefault(model_key(alias), name)

    def alias(self, name: str, target: str) -> None:
        """``--alias NAME=MODEL``: ``name`` also reaches the served model ``target`` names."""
        key = self.find(target)
        if key is None:
            raise ModelNotFoundError(f"--alias {name}={target}: no served model is called {target!r}; served "
                                     f"models: {', '.join(self.models)}", param="model")
        self.aliases[name] = self.aliases[model_key(name)] = key


@dataclass
class Call:
    """One request on its way through a route: what the route looked up and counted."""

    state: State
    options: ServerOptions
    model: str = "-"
    n_inputs: int = 0
    n_tokens: int = 0

    def lookup(self, name: str | None, task: str | None = "embed") -> Worker:
        worker = self.state.lookup(name, task, self.options.strict_model_names)
        self.model = worker.name
        return worker

    def done(self, n_inputs: int, n_tokens: int) -> None:
        self.n_inputs, self.n_tokens = n_inputs, n_tokens


def _error_response(exc: GGUFEmbedError) -> JSONResponse:
    return JSONResponse(exc.to_openai(), status_code=exc.status_code)


def _rerank_error(exc: GGUFEmbedError) -> JSONResponse:
    """A mistake on ``/rerank``: in TEI's shape for a TEI-shaped body, OpenAI's envelope otherwise."""
    return tei.tei_error(exc) if getattr(exc, "api", None) == "tei" else _error_response(exc)


def _cohere_error(exc: GGUFEmbedError) -> JSONResponse:
    """Cohere's error shape: ``{"id": ..., "message": ...}``."""
    return JSONResponse({"id": str(uuid.uuid4()), "message": exc.message}, status_code=exc.status_code)


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


class Guard:
    """The checks before a route runs: API key (constant time) and readiness."""

    def __init__(self, state: State, api_key: str | None):
        self.state, self.key = state, api_key.encode() if api_key else None

    def auth(self, request: Request) -> None:
        if self.key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key):
            raise AuthenticationError("missing or wrong API key (send 'Authorization: Bearer KEY')")

    def ready(self) -> None:
        if not self.state.ready:
            err = self.state.load_error
            raise ServiceUnavailableError(f"models failed to load: {err}" if err else "models are still loading")

    def __call__(self, request: Request) -> None:
        self.auth(request)
        self.ready()


def _endpoint(state: State, options: ServerOptions, guard: Guard,
              handler: Callable[[Call, bytes], Awaitable[Any]], errors: Callable = _error_response) -> Callable:
    """A POST route: guard, read the body, run ``handler``, count it; client errors as 4xx."""

    async def route(request: Request):
        t0, call = time.perf_counter(), Call(state, options)
        try:
            guard(request)
            body = await handler(call, await _read_body(request, options.max_body_bytes))
        except GGUFEmbedError as exc:
            state.metrics.error(exc.code or "invalid_request")
            state.metrics.request(call.model, exc.status_code, time.perf_counter() - t0)
            return errors(exc)
        state.metrics.request(call.model, 200, time.perf_counter() - t0, call.n_inputs, call.n_tokens)
        return JSONResponse(body)

    return route


def _lifespan(state: State, models: Sequence, options: ServerOptions):
    cache = ServerCache(options.cache) if options.cache is not None else None

    def load_all() -> None:
        for source in models:
            state.add(load_worker(source, max_batch_tokens=options.max_batch_tokens, on_batch=state.metrics.batch,
                                  cache=cache), getattr(source, "names", ()))
        for name, target in options.aliases:
            state.alias(name, target)

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
            for worker in state.models.values():
                worker.close()

    return lifespan


def _add_info_routes(app: FastAPI, state: State, guard: Guard) -> None:
    async def list_models(request: Request):
        try:
            guard(request)
        except GGUFEmbedError as exc:
            return _error_response(exc)
        data = [{"id": w.name, "object": "model", "created": 0, "owned_by": "gguf-embed",
                 "dimensions": w.embedder.dimensions, "max_tokens": w.embedder.max_tokens, "task": w.task}
                for w in state.models.values()]
        return {"object": "list", "data": data}

    async def health():
        if state.ready:
            return {"status": "ok", "models": list(state.models)}
        status = "error" if state.load_error else "loading"
        return JSONResponse({"status": status, "error": state.load_error}, status_code=503)

    async def metrics(request: Request):
        try:
            guard.auth(request)
        except GGUFEmbedError as exc:
            return _error_response(exc)
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    for path in ("/v1/models", "/models"):
        app.add_api_route(path, list_models, methods=["GET"])
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])


def _shape(shapes: dict[str, Callable], path: str) -> Callable:
    """The error shape of the API a path belongs to (Ollama's for anything under /api/)."""
    return shapes.get(path) or (ollama.ollama_error if path.startswith("/api/") else _error_response)


def _add_error_handlers(app: FastAPI, state: State, shapes: dict[str, Callable]) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = "not_found" if exc.status_code == 404 else "method_not_allowed" if exc.status_code == 405 else None
        err = GGUFEmbedError(f"{request.method} {request.url.path}: {exc.detail}")
        err.status_code, err.code = exc.status_code, kind
        return _shape(shapes, request.url.path)(err)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("internal error")
        state.metrics.error("internal")
        errors = _shape(shapes, request.url.path)
        if errors is _error_response:
            return JSONResponse(INTERNAL_ERROR, status_code=500)
        err = GGUFEmbedError("internal server error")
        err.status_code = 500
        return errors(err)


def _add_api_routes(app: FastAPI, endpoint: Callable, shapes: dict[str, Callable]) -> None:
    """Ollama's and TEI's routes, each answering mistakes in its API's error shape."""
    for routes, errors in ((ollama.ROUTES, ollama.ollama_error), (tei.ROUTES, tei.tei_error)):
        for methods, path, handler in routes:
            shapes[path] = errors
            app.add_api_route(path, endpoint(handler, errors), methods=methods)

    async def root():  # Ollama's clients check that the server answers here
        return PlainTextResponse("Ollama is running (gguf-embed, an Ollama-compatible embedding server)")

    app.add_api_route("/", root, methods=["GET", "HEAD"])


def create_app(models: Sequence, *, api_key: str | None = None, max_batch_tokens: int = 2048, max_inputs: int = 2048,
               truncate: str = "error", max_body_bytes: int = 32 * 2**20, cors_origins: Sequence[str] = (),
               cache: str | Path | None = None, options: ServerOptions | None = None) -> FastAPI:
    """An app serving ``models`` (Embedders, Rerankers, or callables that load one at start-up);
    ``cache``: a vector cache file shared with ``gguf-embed encode``. ``options`` (all of them, model
    names included) replaces the keyword arguments."""
    if not models:
        raise ValueError("at least one model is needed")
    options = options or ServerOptions(api_key=api_key, max_batch_tokens=max_batch_tokens, max_inputs=max_inputs,
                                       truncate=truncate, max_body_bytes=max_body_bytes,
                                       cors_origins=tuple(cors_origins), cache=cache)
    state = State()
    app = FastAPI(title="gguf-embed", lifespan=_lifespan(state, models, options), docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.gguf_embed = state
    if options.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    guard, shapes = Guard(state, options.api_key), {}
    _add_error_handlers(app, state, shapes)
    _add_api_routes(app, lambda handler, errors: _endpoint(state, options, guard, handler, errors), shapes)
    app.add_api_route("/v1/embeddings", _endpoint(state, options, guard, embeddings_route), methods=["POST"])
    app.add_api_route("/embeddings", _endpoint(state, options, guard, llama.embeddings_any_route), methods=["POST"])
    shapes["/embedding"] = llama.llama_error
    app.add_api_route("/embedding", _endpoint(state, options, guard, llama.embedding_route, llama.llama_error),
                      methods=["POST"])
    app.add_api_route("/embed_sparse", _endpoint(state, options, guard, embed_sparse_route), methods=["POST"])
    app.add_api_route("/embed_all", _endpoint(state, options, guard, embed_all_route), methods=["POST"])
    for path in ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking"):  # TEI's path: its error shape too
        errors = _rerank_error if path == "/rerank" else _error_response
        app.add_api_route(path, _endpoint(state, options, guard, lambda c, r: rerank_route(c, r, "v1"), errors),
                          methods=["POST"])
    app.add_api_route("/v2/rerank", _endpoint(state, options, guard, lambda c, r: rerank_route(c, r, "v2")),
                      methods=["POST"])
    for version in ("v1", "v2"):
        route = _endpoint(state, options, guard, lambda c, r, v=version: cohere_embed_route(c, r, v), _cohere_error)
        app.add_api_route(f"/{version}/embed", route, methods=["POST"])
    _add_info_routes(app, state, guard)
    return app

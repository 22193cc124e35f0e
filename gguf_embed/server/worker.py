"""One worker per served model: prepare (tokenise, in a thread) -> the model's scheduler -> finish.

The scheduler owns the llama.cpp session, so requests for the same model share its batches.
With a vector cache, repeated texts are answered from it, keyed exactly as ``gguf-embed
encode`` keys them, and only the misses reach the scheduler.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..embedder import Embedder
from ..engine.planning import fit_budget, parse_size, read_shape
from ..engine.scheduler import Scheduler
from ..engine.settings import default_threads
from ..errors import InvalidInputError, NonFiniteOutputError
from ..heads.pooling import p_normalize, postprocess
from ..model.info import resolve_model
from ..model.sources import OLLAMA_PREFIX, ollama_name
from ..reranker import Reranker, RerankResult
from ..store.cache import VectorCache, remembered_sha256, text_key
from ..store.codes import CalibrationStore, Quantizer, calibration_seqs, quantizer_from_rows
from ..store.lookup import Batch, distinct, embed_missing
from ..store.space import VectorSpec, vector_params
from .embeddings import EmbeddingRequest
from .rerank import RerankRequest

__all__ = ["Worker", "ServerCache", "Loader", "load_worker", "model_loaders"]


class ServerCache:
    """The vector store behind the embeddings route: the lookup-then-embed path of corpus jobs
    (``store.lookup``), run in a worker thread whose misses go to the model's scheduler."""

    def __init__(self, path):
        self.store = VectorCache(path)
        self._sha: dict[str, str] = {}

    def close(self) -> None:
        self.store.close()

    def _space(self, emb: Embedder, spec: VectorSpec):
        path = str(emb.info.path)
        if path not in self._sha:
            self._sha[path] = self.store.file_sha256(path)
        return self.store.space(emb.name, vector_params(emb, spec, self._sha[path]))

    def _lookup(self, emb: Embedder, texts: Sequence[str], spec: VectorSpec):
        space = self._space(emb, spec)
        keys = [text_key(t) for t in texts]
        unique, first = distinct(keys)
        found = self.store.get_many(space, unique)
        return space, keys, found, [k for k in unique if k not in found], first

    async def vectors(self, emb: Embedder, rows, texts: Sequence[str], seqs: list, spec: VectorSpec) -> np.ndarray:
        """Normalised vectors for ``texts`` (already tokenised as ``seqs``): looked up, and the misses (each
        distinct text once) embedded through ``rows`` (the model's scheduler) and committed, as jobs do."""
        space, keys, found, missing, first = await asyncio.to_thread(self._lookup, emb, texts, spec)
        if missing:
            at = [first[k] for k in missing]
            try:
                raw = await rows([seqs[i] for i in at])
            except NonFiniteOutputError as exc:  # name the request's input, not its place among the misses
                raise NonFiniteOutputError.for_input(at[exc.index]) from None
            batch = Batch(np.arange(len(at)), postprocess(raw, spec.dimensions, True),
                          np.array([len(seqs[i]) for i in at], dtype=np.int64))
            commit = embed_missing(self.store, space, missing, at, lambda items: iter([batch]), found)
            await asyncio.to_thread(lambda: list(commit))
        return np.array([found[k][0] for k in keys], dtype=np.float32).reshape(len(keys), -1)


@dataclass
class Worker:
    name: str
    embedder: Embedder
    scheduler: Scheduler
    owned: bool  # loaded by the app, so closed by it
    reranker: Reranker | None = None  # when the model's task is rerank
    cache: ServerCache | None = None
    _calibration: list = field(default_factory=list)  # [rows, path] once known (int8 / uint8 ranges)
    _calibrating: asyncio.Lock | None = None

    @property
    def task(self) -> str:
        return self.embedder.info.task

    def _check_embeds(self) -> None:
        if self.reranker is not None:
            raise InvalidInputError(f"model {self.name} is a reranker; use /v1/rerank", param="model")

    async def _seqs(self, req: EmbeddingRequest) -> list:
        """The request's inputs as framed token sequences (tokenised in a thread)."""
        emb = self.embedder
        if req.texts is not None:
            return await asyncio.to_thread(emb.tokenize, req.texts, input_type=req.input_type,
                                           instruction=req.instruction, truncate=req.truncate)
        if req.input_type or req.instruction:
            raise InvalidInputError("input_type and instruction apply to text input, not token ids",
                                    param="input_type" if req.input_type else "instruction")
        if req.mixed is not None:
            return await asyncio.to_thread(lambda: [emb.frame_prompt(p, i, req.truncate)
                                                    for i, p in enumerate(req.mixed)])
        return [emb.frame_tokens(ids, i, req.truncate) for i, ids in enumerate(req.token_ids)]

    async def embed(self, req: EmbeddingRequest) -> tuple[np.ndarray, int]:
        """(vectors, tokens) for an embeddings request."""
        emb = self.embedder
        self._check_embeds()
        emb.check_dimensions(req.dimensions)
        if req.late_chunking:
            return await self.embed_late(req)
        seqs = await self._seqs(req)
        alone = req.batch_invariant
        normalize = req.normalize and req.embd_normalize is None

        async def rows(part):
            return await self.scheduler.rows(part, alone=alone)

        if self.cache is not None and req.texts is not None and normalize:
            spec = VectorSpec(input_type=req.input_type, instruction=req.instruction, dimensions=req.dimensions,
                              truncate=req.truncate, batch_invariant=alone)
            vectors = await self.cache.vectors(emb, rows, req.texts, seqs, spec)
        else:
            vectors = emb.finish(await rows(seqs), seqs, req.dimensions, normalize).embeddings
        if req.embd_normalize is not None:
            vectors = p_normalize(vectors, req.embd_normalize)
        return vectors, int(sum(len(s) for s in seqs))

    async def token_vectors(self, req: EmbeddingRequest) -> tuple[list[np.ndarray], int]:
        """Every token's vector of each input, as the model gives them (llama-server's pooling none);
        one pass beside the scheduler, as ``embed_outputs``."""
        emb = self.embedder
        self._check_embeds()
        emb.check_dimensions(req.dimensions)
        seqs = await self._seqs(req)
        res = await asyncio.to_thread(emb.outputs_for, seqs, ("tokens",), req.dimensions, False)
        return [t.vectors for t in res.token_vectors], int(sum(len(s) for s in seqs))

    async def embed_late(self, req: EmbeddingRequest) -> tuple[np.ndarray, int]:
        """Jina's ``late_chunking``: the inputs are one document's chunks, joined and run once (in passes
        of the model's limit past it); each chunk that alone exceeds the limit is refused unless truncated.
        Not cached: a chunk's vector depends on the whole request."""
        emb = self.embedder
        emb.check_late_chunking()
        await asyncio.to_thread(emb.tokenize, req.texts, input_type=req.input_type, instruction=req.instruction,
                                truncate=req.truncate)  # the limit checked chunk by chunk, naming the input
        res = await asyncio.to_thread(emb.embed_chunks_late, req.texts, input_type=req.input_type,
                                      instruction=req.instruction, dimensions=req.dimensions)
        return res.embeddings, res.total_tokens

    async def quantizer(self, precision: str, dimensions: int | None) -> Quantizer:
        """The model's quantizer (int8/uint8: the symmetric scale fixed per model); the calibration set runs
        through the scheduler (shared with the requests) only when no process has stored this model file's
        calibration rows yet."""
        emb = self.embedder
        dims = dimensions or emb.dimensions
        if precision in ("int8", "uint8") and not self._calibration:
            self._calibrating = self._calibrating or asyncio.Lock()
            async with self._calibrating:
                if not self._calibration:
                    self._calibration[:] = await self._calibrate()
        rows, path = self._calibration or (None, None)
        return quantizer_from_rows(precision, rows, dims, True, path)

    async def _calibrate(self) -> list:
        emb, store = self.embedder, CalibrationStore()
        sha = await asyncio.to_thread(remembered_sha256, emb.info.path)
        rows = await asyncio.to_thread(store.load, sha, emb.dimensions)
        if rows is None:
            rows = await self.scheduler.rows(await asyncio.to_thread(calibration_seqs, emb), alone=True)
            await asyncio.to_thread(store.save, sha, rows)
        return [rows, store.path(sha)]

    async def embed_outputs(self, texts: Sequence[str], outputs: tuple[str, ...], *, truncate: str,
                            normalize: bool = True):
        """Per-token outputs (``Embedder.outputs_for``: sparse, colbert, tokens) of ``texts``, from one pass with
        every token's state; it runs beside the scheduler (the session's runner serialises the two)."""
        emb = self.embedder
        self._check_embeds()
        wanted = emb.check_outputs(outputs)
        seqs = await asyncio.to_thread(emb.tokenize, texts, truncate=truncate)
        return await asyncio.to_thread(emb.outputs_for, seqs, wanted, None, normalize)

    async def tokens(self, texts: Sequence[str], *, add_special: bool, input_type: str | None,
                     truncate: str) -> list[tuple[int, str, bool]]:
        """Each text's tokens as (id, text, special) triples, as they are embedded (TEI's /tokenize)."""
        emb = self.embedder
        special = set(emb.session.frame.prefix.tolist()) | set(emb.session.frame.suffix.tolist())

        def run():
            seqs = emb.tokens_of(texts, add_special=add_special, input_type=input_type, truncate=truncate)
            return [[(int(t), emb.detokenize([t], special=True), int(t) in special) for t in s] for s in seqs]

        return await asyncio.to_thread(run)

    async def decode(self, seqs: Sequence[Sequence[int]], *, special: bool) -> list[str]:
        """The text of each token-id list (TEI's /decode)."""
        return await asyncio.to_thread(lambda: [self.embedder.detokenize(ids, special=special) for ids in seqs])

    async def rerank(self, req: RerankRequest, default_truncate: str) -> RerankResult:
        rr = self.reranker
        if rr is None:
            raise InvalidInputError(f"model {self.name} is an embedding model, not a reranker; use /v1/embeddings",
                                    param="model")
        seqs = await asyncio.to_thread(rr.tokenize_pairs, req.query, req.documents, instruction=req.instruction,
                                       truncate=req.truncate or default_truncate)
        try:
            rows = await self.scheduler.rows(seqs)
        except NonFiniteOutputError as exc:  # one row per document, in order
            raise NonFiniteOutputError.for_input(exc.index, what=f"document {exc.index} with the query",
                                                 param="documents") from None
        return rr.finish(rows, seqs, req.raw_scores)

    def close(self) -> None:
        self.scheduler.close()
        if self.owned:
            self.embedder.close()


@dataclass(frozen=True)
class Loader:
    """How ``serve`` opens one of its models, and the names it answers to: what ``-m`` said and, for
    ``ollama:NAME``, Ollama's name (``NAME:latest``), which it is served as."""

    open: Callable[[], Embedder]
    names: tuple[str, ...] = ()
    served_as: str | None = None

    def __call__(self) -> Embedder:
        return self.open()


def load_worker(source, *, max_batch_tokens: int, on_batch: Callable, cache: ServerCache | None) -> Worker:
    """A worker for an Embedder or Reranker, or for a callable (a ``Loader``) that loads an Embedder."""
    owned = not isinstance(source, (Embedder, Reranker))
    served_as = getattr(source, "served_as", None)
    if owned:
        source = source()
    emb = Embedder(session=source.session) if isinstance(source, Reranker) else source
    scheduler = Scheduler(emb.session, max_batch_tokens=max_batch_tokens, on_batch=on_batch)
    reranker = Reranker(session=emb.session) if emb.info.task == "rerank" else None
    return Worker(served_as or emb.name, emb, scheduler, owned, reranker, cache)


def model_loaders(models: Sequence[str], settings, opener: Callable = Embedder) -> list[Loader]:
    """Loaders (``opener(path, settings)``) for ``serve``'s models, each checked first (the file exists,
    a ``--vram`` budget fits) so that a mistake is reported before the port is bound."""
    paths = [resolve_model(m, models_dir=settings.models_dir) for m in models]
    if settings.vram:
        for p in paths:
            fit_budget(read_shape(p), parse_size(settings.vram), n_ctx=settings.n_ctx,
                       batch_tokens=settings.batch_tokens)
    if settings.n_threads is None:
        # leave a core for HTTP, JSON and tokenisation: llama.cpp's threads wait on each other
        # at every step, and one of them losing its core to the web layer stalls them all
        settings = settings.with_(n_threads=max(1, default_threads() - 1))
    return [Loader(functools.partial(opener, p, settings), (m,),
                   ollama_name(m) if m.startswith(OLLAMA_PREFIX) else None) for m, p in zip(models, paths)]

"""Corpus jobs on Ray: the callable each actor builds once (``EmbedBatch``, also what
``gguf_embed.ray.embed_dataset`` hands to ``Dataset.map_batches``) and the job backend that feeds a
pool of such actors (``RayBackend``). Ray is optional: ``pip install 'gguf-embed[ray]'``.

Each actor loads the GGUF once (from its path, the models dir, or converted from the Hugging Face
Hub), checks it against the driver's sha256 when given one, and embeds every batch it is handed
with the same batch core as ``Embedder.embed``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..convert import convert_model
from ..embedder import Embedder
from ..engine.machine import resolve_quant
from ..engine.settings import RuntimeSettings
from ..errors import GGUFEmbedError, ModelLoadError, ModelNotFoundError, RayNotInstalledError
from ..model.info import resolve_model
from ..registry import default_models_dir, load_registry
from ..store.cache import remembered_sha256
from ..store.lookup import Batch
from .backends import tokenize_checked

__all__ = ["EmbedBatch", "RayBackend", "fetch_model", "ray_encoder", "ray_module"]


def ray_module():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayNotInstalledError("Ray Data is not installed; pip install 'gguf-embed[ray]'") from None
    return ray


def fetch_model(model: str, models_dir: str | None = None, local_path: str | None = None) -> Path:
    """The GGUF on this node: ``local_path`` if it exists here, else what ``resolve_model`` finds (the
    models dir; ``hf:OWNER/REPO/FILE.gguf`` or ``hf:OWNER/REPO:QUANT`` downloaded into it once;
    ``ollama:NAME:TAG`` from Ollama's store), else a ``models.toml`` model converted from the Hub."""
    if local_path and Path(local_path).is_file():
        return Path(local_path)
    try:
        return resolve_model(model, models_dir=Path(models_dir) if models_dir else None)
    except ModelNotFoundError:
        reg = load_registry()
        if model not in reg:
            raise
        folder = Path(models_dir) if models_dir else None
        entry = reg.get(model)
        quant, _ = resolve_quant(entry.default_quant)
        out = (folder or default_models_dir()) / entry.gguf_filename(quant)
        return convert_model(model, out, entry.default_quant, registry=reg).path


class EmbedBatch:
    """``map_batches`` callable: adds ``output_column`` (float32 rows) and ``tokens`` to each batch."""

    def __init__(self, model: str, *, text_column: str = "text", output_column: str = "embedding",
                 models_dir: str | None = None, local_path: str | None = None, expected_sha256: str | None = None,
                 input_type: str | None = None, instruction: str | None = None, dimensions: int | None = None,
                 normalize: bool = True, truncate: str = "error", n_threads: int | None = None,
                 embedder_kwargs: dict | None = None, settings: RuntimeSettings | None = None,
                 batch_invariant: bool = False):
        path = fetch_model(model, models_dir, local_path)
        if expected_sha256:
            digest = remembered_sha256(path)
            if digest != expected_sha256:
                raise ModelLoadError(f"{path} on this node has sha256 {digest[:12]}, not the driver's "
                                     f"{expected_sha256[:12]}; give every node the same file")
        self.embedder = Embedder(path, settings=settings, n_threads=n_threads, **(embedder_kwargs or {}))
        self.embedder.check_dimensions(dimensions)
        self.text_column, self.output_column = text_column, output_column
        self.options = dict(input_type=input_type, instruction=instruction, dimensions=dimensions,
                            normalize=normalize, truncate=truncate, batch_invariant=batch_invariant)

    def __call__(self, batch: dict) -> dict:
        texts = [str(t) for t in batch[self.text_column]]
        result = self.embedder.embed(texts, **self.options)
        out = dict(batch)
        out[self.output_column] = result.embeddings
        out["tokens"] = result.token_counts
        return out


class _EmbedActor:
    """One Ray actor of a corpus job: loads the model once (``EmbedBatch``) and embeds every chunk of
    every window it is handed, as (positions, vectors, token counts)."""

    def __init__(self, **ctor):
        self.batch = EmbedBatch(**ctor)

    def embed(self, positions: np.ndarray, texts: list[str]):
        out = self.batch({"text": np.asarray(texts, dtype=object)})
        return positions, np.asarray(out["embedding"], np.float32), np.asarray(out["tokens"], np.int64)


class RayBackend:
    """A corpus-job backend (see ``corpus.stream.stream_job``) that validates in this process and
    embeds on a pool of Ray actors started on the first window and kept for the whole job, yielding
    batches as they return. ``close`` ends the actors (and the Ray session, if it started it)."""

    def __init__(self, emb: Embedder, spec, *, model: str, model_sha256: str, address: str, workers: int,
                 num_gpus: float = 0, settings: RuntimeSettings, threads: int | None, models_dir: Path | None):
        self.emb, self.spec, self.workers = emb, spec, max(1, int(workers))
        self.ctor = dict(model=str(model), models_dir=str(models_dir) if models_dir else None,
                         local_path=str(Path(emb.info.path).resolve()), expected_sha256=model_sha256,
                         n_threads=threads, settings=settings.with_(n_threads=None),
                         input_type=spec.input_type, instruction=spec.instruction, dimensions=spec.dimensions,
                         normalize=spec.normalize, truncate=spec.truncate, batch_invariant=spec.batch_invariant)
        self.cpus, self.gpus, self.address = float(threads or 1), num_gpus, address
        self.started_here, self.pool, self.actors = False, None, []

    def _start(self):
        ray = ray_module()
        if not ray.is_initialized():
            if self.address == "local":
                ray.init(include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
            self.started_here = True
        from ray.util import ActorPool

        remote = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus or None)(_EmbedActor)
        self.actors = [remote.remote(**self.ctor) for _ in range(self.workers)]
        self.pool = ActorPool(self.actors)

    def __call__(self, texts: Sequence[str]) -> Iterator[Batch]:
        bad: dict[int, str] = {}
        for a in range(0, len(texts), self.spec.window):  # refuse over-long inputs here, before the cluster works
            _, why = tokenize_checked(self.emb, texts[a:a + self.spec.window], self.spec)
            bad.update({a + i: m for i, m in why.items()})
        if bad:
            yield Batch(np.zeros(0, np.int64), np.zeros((0, self.spec.dimensions or self.emb.dimensions), np.float32),
                        np.zeros(0, np.int64), bad)
        ok = np.array([i for i in range(len(texts)) if i not in bad], dtype=np.int64)
        if not len(ok):
            return
        if self.pool is None:
            self._start()
        step = max(1, min(256, -(-len(ok) // (self.workers * 2))))  # every actor busy, results back early
        chunks = [(ok[a:a + step], [texts[i] for i in ok[a:a + step]]) for a in range(0, len(ok), step)]
        try:
            for positions, vectors, tokens in self.pool.map_unordered(lambda actor, c: actor.embed.remote(*c), chunks):
                yield Batch(positions, vectors, tokens)
        except Exception as exc:  # an actor's error comes back wrapped; say what it was in one line
            cause = getattr(exc, "cause", None)
            if isinstance(cause, GGUFEmbedError):
                raise cause from None
            raise

    def close(self) -> None:
        ray = ray_module()
        for actor in self.actors:
            ray.kill(actor)
        self.actors, self.pool = [], None
        if self.started_here and ray.is_initialized():
            ray.shutdown()
        self.started_here = False


def ray_encoder(emb: Embedder, spec, *, model: str, model_sha256: str, address: str, workers: int,
                num_gpus: float = 0, settings: RuntimeSettings | None = None, models_dir: Path | None = None,
                threads: int | None = None, embedder_kwargs: dict | None = None) -> RayBackend:
    """The Ray backend of a corpus job. The actors run with ``settings`` (or the older ``models_dir``,
    ``threads`` and ``embedder_kwargs``); with no thread count, a local cluster's cores are shared out."""
    ray = ray_module()
    settings = (settings or RuntimeSettings()).with_(**{k: v for k, v in (embedder_kwargs or {}).items()
                                                         if v is not None})
    models_dir, threads = models_dir or settings.models_dir, threads or settings.n_threads
    if threads is None and address == "local":
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    ray.data.DataContext.get_current().enable_progress_bars = False
    return RayBackend(emb, spec, model=model, model_sha256=model_sha256, address=address, workers=workers,
                      num_gpus=num_gpus, settings=settings, threads=threads, models_dir=models_dir)

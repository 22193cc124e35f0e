"""The vector cache in front of the server's batcher, keyed exactly as ``gguf-embed encode`` keys it."""

from __future__ import annotations

from typing import Awaitable, Callable, Sequence

import numpy as np
from starlette.concurrency import run_in_threadpool

from ..embedder import Embedder
from ..pooling import postprocess
from .cache import VectorCache, text_key
from .job import JobSpec, job_params

__all__ = ["ServerCache"]


class ServerCache:
    def __init__(self, path):
        self.store = VectorCache(path)
        self._sha: dict[str, str] = {}

    def close(self) -> None:
        self.store.close()

    def _space(self, emb: Embedder, spec: JobSpec):
        path = str(emb.info.path)
        if path not in self._sha:
            self._sha[path] = self.store.file_sha256(path)
        return self.store.space(emb.name, job_params(emb, spec, self._sha[path]))

    async def embed(self, emb: Embedder, run: Callable[[list], Awaitable[np.ndarray]], texts: Sequence[str],
                    seqs: list, *, input_type, instruction, dimensions, truncate) -> np.ndarray:
        """Normalised vectors for ``texts`` (already tokenised as ``seqs``); only cache misses go to ``run``."""
        spec = JobSpec(input_type=input_type, instruction=instruction, dimensions=dimensions, truncate=truncate)
        space = await run_in_threadpool(self._space, emb, spec)
        keys = [text_key(t) for t in texts]
        hits = await run_in_threadpool(self.store.get_many, space, keys)
        out = np.empty((len(texts), dimensions or emb.dimensions), dtype=np.float32)
        miss = [i for i, k in enumerate(keys) if k not in hits]
        if miss:
            vecs = postprocess(await run([seqs[i] for i in miss]), dimensions, True)
            out[miss] = vecs
            await run_in_threadpool(self.store.put_many, space, [keys[i] for i in miss], vecs,
                                    [len(seqs[i]) for i in miss])
        for i, k in enumerate(keys):
            if k in hits:
                out[i] = hits[k][0]
        return out

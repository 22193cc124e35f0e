"""Run MTEB (mteb 2.x) on a GGUF: a thin encoder with the interface mteb's ``EncoderProtocol`` describes.

    import mteb
    from gguf_embed.mteb import MTEBEncoder

    model = MTEBEncoder("models/multilingual-e5-small-Q8_0.gguf")
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["STS22"]))

mteb hands ``encode`` a DataLoader of batches (dicts with a ``"text"`` list), the task's
metadata and a prompt type (query or document). Queries get the model's query prompt,
everything else the document prompt, as ``gguf-embed encode --input-type`` does; for
instruction-following models (Qwen3-Embedding) a per-task instruction can be given in
``instructions`` (keyed by task name, else task type). mteb itself is not needed to
import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .embedder import Embedder
from .heads.pooling import l2_normalize

__all__ = ["MTEBEncoder"]


def _texts(batch: Any) -> list[str]:
    if isinstance(batch, Mapping):
        texts = batch.get("text")
        if texts is None:
            raise ValueError("an mteb batch without a 'text' field (only text tasks are supported)")
        return [str(t) for t in texts]
    if isinstance(batch, str):
        return [batch]
    return [str(t) for t in batch]


def _prompt_name(prompt_type: Any) -> str | None:
    value = getattr(prompt_type, "value", prompt_type)
    return None if value is None else str(value)


class MTEBEncoder:
    """A GGUF embedding model as an mteb 2.x encoder."""

    def __init__(
        self,
        model_name: str | Path,
        revision: str | None = None,
        *,
        device: str | None = None,
        embedder: Any = None,
        instructions: Mapping[str, str] | None = None,
        truncate: str = "end",
        **embedder_kwargs: Any,
    ) -> None:
        if embedder is None:
            if device == "cpu":
                embedder_kwargs.setdefault("n_gpu_layers", 0)
            embedder = Embedder(model_name, **embedder_kwargs)
        self.embedder = embedder
        self.model_name = str(model_name)
        self.revision = revision
        self.instructions = dict(instructions or {})
        self.truncate = truncate

    def _instruction(self, task_metadata: Any, input_type: str) -> str | None:
        if input_type != "query" or not self.instructions:
            return None
        for key in (getattr(task_metadata, "name", None), getattr(task_metadata, "type", None)):
            if key in self.instructions:
                return self.instructions[key]
        return None

    def encode(
        self,
        inputs: Iterable[Any],
        *,
        task_metadata: Any = None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Vectors (n, d) for every text of every batch in ``inputs``, in order."""
        input_type = "query" if _prompt_name(prompt_type) == "query" else "document"
        instruction = self._instruction(task_metadata, input_type)
        texts = [t for batch in inputs for t in _texts(batch)]
        if not texts:
            return np.zeros((0, self.embedder.dimensions), dtype=np.float32)
        result = self.embedder.embed(texts, input_type=input_type, instruction=instruction, truncate=self.truncate)
        return result.embeddings

    @staticmethod
    def similarity(embeddings1: Any, embeddings2: Any) -> np.ndarray:
        return l2_normalize(embeddings1) @ l2_normalize(embeddings2).T

    @staticmethod
    def similarity_pairwise(embeddings1: Any, embeddings2: Any) -> np.ndarray:
        return (l2_normalize(embeddings1) * l2_normalize(embeddings2)).sum(axis=1)

    @property
    def mteb_model_meta(self) -> Any:
        """mteb's ModelMeta for this GGUF when mteb is installed (else None: mteb then makes an empty one)."""
        try:
            from mteb.models.model_meta import ModelMeta
        except ImportError:
            return None
        info = self.embedder.info
        return ModelMeta.create_empty(overwrites={
            "name": f"gguf-embed/{info.name}", "revision": self.revision or Path(info.path).name,
            "embed_dim": info.n_embd, "max_tokens": info.max_tokens,
        })

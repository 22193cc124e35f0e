"""What a corpus job is asked to do (``JobSpec``) and what it did (``JobStats``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..embedder import Embedder
from ..store.space import VectorSpec, vector_params

__all__ = ["JobSpec", "JobStats", "DEFAULT_WINDOW", "NON_FINITE", "MAX_NON_FINITE", "job_params"]

DEFAULT_WINDOW = 1024
NON_FINITE = "the model gave a vector with NaN or inf values (not cached; the llama.cpp context was rebuilt)"
MAX_NON_FINITE = 8  # per window: more, and the backend itself is broken


@dataclass(frozen=True)
class JobSpec:
    input_type: str | None = None
    instruction: str | None = None
    dimensions: int | None = None
    normalize: bool = True
    truncate: str = "error"
    chunk_tokens: int | None = None
    chunk_overlap: int = 0
    window: int = DEFAULT_WINDOW
    late_chunking: bool = False  # each chunk pooled from one pass over its whole document (corpus/late_chunks.py)
    outputs: tuple[str, ...] = ("dense",)  # choices.OUTPUTS: anything beyond "dense" is computed per token
    batch_invariant: bool = False  # each text in a llama.cpp batch of its own: bit-identical in any batch

    @property
    def dense_only(self) -> bool:
        return tuple(self.outputs) == ("dense",)

    @property
    def vectors(self) -> VectorSpec:
        """The settings that key this job's vectors in the store."""
        late = (self.chunk_tokens, self.chunk_overlap) if self.late_chunking else None
        return VectorSpec(self.input_type, self.instruction, self.dimensions, self.normalize, self.truncate,
                          self.batch_invariant, late)

    def embed_kwargs(self) -> dict:
        return {"input_type": self.input_type, "instruction": self.instruction, "truncate": self.truncate}


@dataclass
class JobStats:
    documents: int = 0
    count: int = 0  # output rows
    embedded: int = 0  # distinct texts run through the model in this invocation
    reused: int = 0  # distinct texts taken from the cache or an earlier interrupted run
    duplicates: int = 0  # rows whose text appeared earlier in this corpus (embedded once)
    skipped: int = 0  # records set aside with skip_bad
    tokens: int = 0  # tokens run through the model in this invocation
    seconds: float = 0.0


def job_params(emb: Embedder, spec: JobSpec, model_sha256: str) -> dict:
    """The store's space parameters for ``spec``'s vectors of ``emb`` (``store.space.vector_params``)."""
    return vector_params(emb, spec.vectors, model_sha256)

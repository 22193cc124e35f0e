"""What, besides its text, decides a stored vector: the settings that key a space of the store.

Corpus jobs, the server and Ray actors key their vectors the same way, so a text embedded by
one is found by the others: the model file's sha256 and every setting that changes a vector
(prompt, instruction, pooling, dimensions, normalisation, truncation, token limit; and for
batch-invariant or late-chunked vectors, that they are).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..embedder import Embedder

__all__ = ["VectorSpec", "space_params", "vector_params"]


@dataclass(frozen=True)
class VectorSpec:
    """The settings of a vector as it is stored (``corpus.JobSpec.vectors`` gives a job's)."""

    input_type: str | None = None
    instruction: str | None = None
    dimensions: int | None = None
    normalize: bool = True
    truncate: str = "error"
    batch_invariant: bool = False  # each text in a llama.cpp batch of its own: bit-identical in any batch
    late: tuple[int, int] | None = None  # late chunking: (chunk tokens, overlap) of the document's chunks


def space_params(model_sha256: str, *, prompt: str, input_type: str | None, instruction: str | None, pooling: str,
                 dimensions: int, normalize: bool, truncate: str, max_tokens: int) -> dict:
    """Everything that changes a vector besides its text; the CLI, the server and Ray share it."""
    return {"model_sha256": model_sha256, "prompt": prompt, "input_type": input_type or "document",
            "instruction": instruction, "pooling": pooling, "dimensions": int(dimensions),
            "normalize": bool(normalize), "truncate": truncate, "max_tokens": int(max_tokens)}


def vector_params(emb: Embedder, spec: VectorSpec, model_sha256: str) -> dict:
    """The space parameters of ``emb``'s vectors made as ``spec`` says (the dimensions checked)."""
    emb.check_dimensions(spec.dimensions)
    params = space_params(
        model_sha256, prompt=emb.prompt_for(spec.input_type, spec.instruction), input_type=spec.input_type,
        instruction=spec.instruction, pooling=emb.info.pooling, dimensions=spec.dimensions or emb.dimensions,
        normalize=spec.normalize, truncate=spec.truncate, max_tokens=emb.max_tokens)
    if spec.batch_invariant:  # bit-identical rows; packed ones move by float noise with their batch
        params.update(batch_invariant=True)
    if spec.late is not None:  # a late chunk's vector depends on how its whole document was chunked
        params.update(late_chunking=True, chunk_tokens=spec.late[0], chunk_overlap=spec.late[1])
    return params

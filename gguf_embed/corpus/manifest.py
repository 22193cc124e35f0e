"""``OUT.manifest.json``: which model, file, quantisation and settings produced a set of vectors."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from importlib import metadata

from .. import __version__
from ..embedder import Embedder
from .spec import JobSpec, JobStats

__all__ = ["build_manifest", "file_type_name", "utc_now"]


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover
        return None


def file_type_name(emb: Embedder) -> str | None:
    """The GGUF's ``general.file_type`` as llama.cpp names it (F16, Q8_0, Q4_K_M...)."""
    return emb.info.file_type_name


def build_manifest(emb: Embedder, spec: JobSpec, stats: JobStats, *, model_sha256: str, inputs: list[str],
                   output: str | None, fmt: str, started: str, extra: dict | None = None) -> dict:
    counts = {k: v for k, v in asdict(stats).items() if k != "seconds"}
    return {
        "model": emb.name,
        "model_file": emb.info.path.name,
        "family": emb.info.family,
        "model_sha256": model_sha256,
        "file_type": file_type_name(emb),
        "pooling": emb.info.pooling,
        "dimensions": spec.dimensions or emb.dimensions,
        "outputs": list(spec.outputs),
        "normalized": spec.normalize,
        "input_type": spec.input_type or "document",
        "instruction": spec.instruction,
        "prompt": emb.prompt_for(spec.input_type, spec.instruction),
        "truncate": spec.truncate,
        "max_tokens": emb.max_tokens,
        "chunk_tokens": spec.chunk_tokens,
        "chunk_overlap": spec.chunk_overlap if spec.chunk_tokens else None,
        "late_chunking": spec.late_chunking,
        "batch_invariant": spec.batch_invariant,
        **counts,
        "inputs": inputs,
        "output": output,
        "format": fmt,
        "rows": "input order; chunks of a document in document order",
        "seconds": round(stats.seconds, 3),
        "gguf_embed_version": __version__,
        "llama_cpp_version": _version("llama-cpp-python"),
        "started": started,
        "finished": utc_now(),
        **(extra or {}),
    }

"""A whole corpus job as one call: read and check the inputs, open the store, embed (here or on
Ray), write the output, its manifest and the errors file, each whole or not at all.

    summary = run_corpus(CorpusRequest(inputs=("docs.jsonl",), output=Path("v.parquet")), embedder, JobSpec())
"""

from __future__ import annotations

import json
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Callable, ContextManager

from ..embedder import Embedder
from ..errors import BadInputError, InvalidInputError
from ..heads.precision import check_precision
from ..store.cache import VectorCache, default_cache_path
from ..store.codes import Quantizer, model_quantizer
from .manifest import build_manifest, utc_now
from .outputs import CACHE_NOTE, stream_outputs
from .ray_actors import ray_encoder
from .readers import iter_corpus
from .records import BadRecord
from .seen import BadLog
from .spec import JobSpec, JobStats
from .stream import stream_job, temporary_store
from .writers import RowSink, Rows, atomic_path, publish, sidecar

__all__ = ["CorpusRequest", "RayOptions", "CorpusSummary", "run_corpus", "progress_file"]

Step = Callable[[int, int, int], None]  # (rows done, tokens, rows from the cache)
ProgressFactory = Callable[[int | None], ContextManager[Step]]  # total rows (None: not known) -> the step callback


@dataclass(frozen=True)
class RayOptions:
    address: str
    workers: int = 1
    gpus: float = 0
    model: str = ""  # as the user named it: every actor resolves it on its own node
    settings: object = None  # the RuntimeSettings the actors run with


@dataclass(frozen=True)
class CorpusRequest:
    inputs: tuple[str, ...]
    output: Path | None = None  # None: JSONL rows to ``stdout``
    fmt: str = "jsonl"
    text_field: str = "text"
    id_field: str = "id"
    input_format: str | None = None
    skip_bad: bool = False
    cache: Path | None = None
    no_cache: bool = False
    restart: bool = False
    ray: RayOptions | None = None
    keep_text: bool = False  # a text column (Parquet) / field (JSONL) with each row's text
    precision: str = "float"  # vectors as written: float32, int8/uint8 codes or packed bits (heads.precision)
    rescore: str | None = None  # with packed bits, Parquet: int8 codes or float32 beside them, to rescore with
    code_scheme: str = "symmetric"  # int8/uint8 codes: one scale per model, or per-dimension ranges (choices)


@dataclass
class CorpusSummary:
    rows: Rows | None  # None: the rows were streamed to the output
    stats: JobStats
    bad: list[BadRecord]
    count: int = 0  # rows written
    dims: int = 0


def progress_file(output: Path) -> Path:
    return output.with_name(f".{output.name}.progress.sqlite")


def _remove_db(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)


def _open_store(req: CorpusRequest) -> VectorCache | None:
    """The shared cache, or (with --no-cache) a private progress file next to the output for resuming."""
    if not req.no_cache:
        return VectorCache(req.cache or default_cache_path())
    if req.output is None:
        return None
    progress = progress_file(req.output)
    if req.restart:
        _remove_db(progress)
    return VectorCache(progress)


def check_chunking(emb, spec: JobSpec) -> None:
    if spec.chunk_tokens is None:
        return
    if spec.chunk_tokens > emb.max_tokens:
        raise InvalidInputError(f"`chunk_tokens` {spec.chunk_tokens} is more than the model's limit of {emb.max_tokens}")
    overhead = len(emb.tokenize(["x"], input_type=spec.input_type, instruction=spec.instruction)[0])
    if spec.chunk_tokens <= overhead:
        raise InvalidInputError(f"`chunk_tokens` {spec.chunk_tokens} leaves no room for text: the prompt and special "
                                f"tokens take {overhead - 1}")


def check_late(emb: Embedder, spec: JobSpec, ray: bool) -> None:
    if not spec.late_chunking:
        return
    if spec.chunk_tokens is None:
        raise InvalidInputError("`late_chunking` needs `chunk_tokens` (the chunks it pools)", param="chunk_tokens")
    if ray:
        raise InvalidInputError("`late_chunking` does not run on Ray yet; run it without `ray`", param="late_chunking")
    emb.check_late_chunking()


def _ray_backend(emb, spec: JobSpec, ray: RayOptions, sha: str):
    return ray_encoder(emb, spec, model=ray.model, model_sha256=sha, address=ray.address, workers=ray.workers,
                       num_gpus=ray.gpus, settings=ray.settings)


def _write_errors(output: Path, bad: list | None) -> None:
    errors = sidecar(output, ".errors.jsonl")
    if bad:
        with atomic_path(errors) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(b.to_json(), ensure_ascii=False) + "\n" for b in bad)
            publish(tmp, errors)
    elif bad is not None:
        errors.unlink(missing_ok=True)


def _stream(req: CorpusRequest, emb, spec: JobSpec, store, sha: str, sink: RowSink, progress: ProgressFactory,
            stats: JobStats, bad: list, quantizer: Quantizer | None = None, rescore: Quantizer | None = None) -> None:
    """Read, embed and write, one window at a time (the store keeps floats; codes are made here)."""
    backend = _ray_backend(emb, spec, req.ray, sha) if req.ray is not None else None
    records = iter_corpus(req.inputs, text_field=req.text_field, id_field=req.id_field, skip_bad=req.skip_bad,
                          input_format_name=req.input_format, bad=bad)
    job_bad = BadLog()
    try:
        with progress(None) as step:
            if spec.dense_only:
                parts = stream_job(records, emb, spec, store, backend=backend, model_sha256=sha,
                                   reuse=not req.restart, skip_bad=req.skip_bad, keep_text=req.keep_text,
                                   progress=step, stats=stats, bad=job_bad)
            else:  # sparse, ColBERT, token vectors: every token's state, not the cache (see corpus.outputs)
                parts = stream_outputs(records, emb, spec, skip_bad=req.skip_bad, keep_text=req.keep_text,
                                       progress=step, stats=stats, bad=job_bad)
            for rows in parts:
                if quantizer is not None:
                    rows = replace(rows, vectors=quantizer(rows.vectors),
                                   rescore=None if rescore is None else rescore(rows.vectors))
                sink.write(rows)
    finally:
        if backend is not None:
            backend.close()
    if not stats.documents:
        raise BadInputError(f"no text to embed in {', '.join(req.inputs)}")
    bad.extend(job_bad)
    stats.skipped = len(bad)


def _manifest(req: CorpusRequest, emb, spec: JobSpec, stats: JobStats, store, sha: str, started: str,
              quantizer: Quantizer | None = None, rescore: Quantizer | None = None) -> dict:
    cache = None if req.no_cache else str(store.path)
    if not spec.dense_only:
        cache = CACHE_NOTE
    ray = req.ray and {"address": req.ray.address, "workers": req.ray.workers}
    precision = {"precision": quantizer.precision if quantizer else "float"}
    if quantizer is not None:
        precision["quantization"] = quantizer.describe()
    if rescore is not None:
        precision["rescore"] = rescore.describe()
    return build_manifest(emb, spec, stats, model_sha256=sha, inputs=list(req.inputs), output=req.output.name,
                          fmt=req.fmt, started=started,
                          extra={"cache": cache, "ray": ray, "keep_text": req.keep_text, "text_field": req.text_field,
                                 "id_field": req.id_field, "input_format": req.input_format, **precision})


def run_corpus(req: CorpusRequest, emb, spec: JobSpec, *, progress: ProgressFactory | None = None,
               stdout: IO[str] | None = None) -> CorpusSummary:
    """Embed ``req.inputs`` with ``emb`` and write the result where ``req`` says: the output streams
    into a temporary file that is renamed into place, with its manifest, once the job is done."""
    started = utc_now()
    progress = progress or (lambda total: nullcontext(None))
    check_chunking(emb, spec)
    check_late(emb, spec, req.ray is not None)
    emb.check_dimensions(spec.dimensions)
    emb.check_outputs(spec.outputs)
    if req.ray is not None and not spec.dense_only:
        raise InvalidInputError("outputs beyond dense are computed in this process, not on Ray", param="outputs")
    stats, bad, dims = JobStats(), BadLog(), spec.dimensions or emb.dimensions
    check_precision(req.precision, dims)
    if req.precision != "float":  # codes must not depend on the batch a text was packed in
        spec = replace(spec, batch_invariant=True)
    if req.rescore and (not req.precision.endswith("binary") or req.fmt != "parquet" or req.output is None):
        raise InvalidInputError("rescore vectors go beside binary or ubinary vectors in a Parquet index "
                                "(`precision` binary|ubinary `output` OUT.parquet)", param="rescore")
    store = _open_store(req)
    with ExitStack() as stack:
        if store is None:
            store = stack.enter_context(temporary_store())
        else:
            stack.callback(store.close)
        sha = store.file_sha256(emb.info.path)
        q = None if req.precision == "float" else model_quantizer(emb, req.precision, dimensions=spec.dimensions,
                                                                    normalize=spec.normalize, model_sha256=sha,
                                                                    scheme=req.code_scheme)
        width, dtype = (q.width, q.dtype) if q else (dims, "float32")
        rq = req.rescore and model_quantizer(emb, req.rescore, dimensions=spec.dimensions, normalize=spec.normalize,
                                             model_sha256=sha, scheme=req.code_scheme)
        if req.output is None:
            sink = RowSink("jsonl", stdout, width, dtype)
            _stream(req, emb, spec, store, sha, sink, progress, stats, bad, q)
            sink.finish()
        else:
            out_tmp = stack.enter_context(atomic_path(req.output))
            man_tmp = stack.enter_context(atomic_path(sidecar(req.output, ".manifest.json")))
            sink = RowSink(req.fmt, out_tmp, width, dtype)
            stack.callback(sink.close)
            _stream(req, emb, spec, store, sha, sink, progress, stats, bad, q, rq)
            sink.finish()
            _write_errors(req.output, bad if req.skip_bad else None)
            manifest = _manifest(req, emb, spec, stats, store, sha, started, q, rq)
            man_tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            publish(man_tmp, sidecar(req.output, ".manifest.json"))
            publish(out_tmp, req.output)
    if req.no_cache and req.output is not None:
        _remove_db(progress_file(req.output))
    return CorpusSummary(None, stats, bad, sink.count, dims)


"""Search an index written by ``gguf-embed encode ... -o OUT.parquet``: queries in, ranked rows out.

    from gguf_embed.corpus.search import search

    for hit in search("vectors.parquet", "how do plants make energy?", top_k=5)[0]:
        print(hit.rank, hit.score, hit.id)

The query is embedded in the index's own space (the model file, pooling, dimensions and
normalisation its manifest records; the model's query prompt). Exact search streams the
Parquet's vectors in bounded batches and keeps a running top-k, so memory does not grow with
the index; ``faiss=`` uses an approximate FAISS index built next to the Parquet instead
(``gguf_embed.corpus.ann``). ``reranker=`` rescores the top-k with a cross-encoder or Qwen3-Reranker.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import GGUFEmbedError, InvalidInputError
from ..heads.pooling import l2_normalize
from ..heads.precision import code_dtype, code_width, dequantize, ranges_digest
from ..choices import PRECISIONS
from .cache import remembered_sha256

__all__ = ["Hit", "SearchIndex", "SearchError", "search", "search_vectors", "top_k_exact", "embed_queries",
           "index_model", "check_embedder", "fill_texts", "rerank_hits", "model_sha256"]

SCORE_BLOCK = 1 << 24  # query x row scores held at once (64 MiB of float32)
MIN_BATCH_ROWS, MAX_BATCH_ROWS = 1024, 8192
READ_BUFFER = 1 << 20  # the Parquet is streamed through a buffer this size, never read whole
MANIFEST_SUFFIX = ".manifest.json"
META_COLUMNS = ("id", "chunk", "start", "end", "text")


class SearchError(InvalidInputError):
    code = "search_error"


@dataclass(frozen=True)
class Hit:
    """One result: ``score`` is the cosine, or the reranker's score (then ``similarity`` is the cosine)."""

    rank: int
    id: str
    score: float
    row: int  # the row in the Parquet
    chunk: int | None = None
    start: int | None = None
    end: int | None = None
    text: str | None = None
    similarity: float | None = None

    def to_json(self, query: int | None = None) -> dict:
        out = {} if query is None else {"query": query}
        out.update(rank=self.rank, id=self.id, score=self.score)
        if self.similarity is not None:
            out["similarity"] = self.similarity
        for key in ("chunk", "start", "end", "text"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def check_count(value, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise SearchError(f"{name} must be a positive integer (got {value!r})", param=name)


class SearchIndex:
    """A Parquet of vectors and its manifest, checked to agree; vectors are read in batches."""

    def __init__(self, path: str | Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not self.path.is_file():
            raise SearchError(f"no index at {self.path} (make one with: gguf-embed encode FILES -m MODEL -o "
                              f"{self.path.name})")
        self.manifest = _read_manifest(self.path)
        try:
            # no pre-buffering: pyarrow would otherwise fetch every row group's column chunks up front
            self._pf = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=READ_BUFFER)
        except (pa.ArrowException, OSError) as exc:
            raise SearchError(f"{self.path} is not a Parquet file: {str(exc).splitlines()[0]}") from None
        schema = self._pf.schema_arrow
        etype = schema.field("embedding").type if "embedding" in schema.names else None
        self.precision, self.ranges = stored_precision(self.manifest, man_name(self.path))
        want = pa.from_numpy_dtype(code_dtype(self.precision))
        if "id" not in schema.names or etype is None or not pa.types.is_fixed_size_list(etype) \
                or etype.value_type != want:
            raise SearchError(f"{self.path} has no 'id' and fixed-size {want} 'embedding' columns "
                              "(not written by gguf-embed encode)")
        self.width = etype.list_size  # values per row: the dimensions, or bytes of packed bits
        self.dims = self.manifest.get("dimensions")
        self.columns = [c for c in META_COLUMNS if c in schema.names]
        if not isinstance(self.dims, int) or code_width(self.precision, self.dims) != self.width:
            raise SearchError(f"{self.path} holds {self.width}-value {self.precision} rows but its manifest says "
                              f"{self.dims} dimensions; the two files are from different runs")
        r = self.manifest.get("rescore") or {}  # int8 codes or floats beside packed bits
        self.rescore = stored_precision({"precision": r.get("precision"), "quantization": r}, man_name(self.path)) \
            if "rescore" in schema.names else None
        meta = self._pf.metadata
        self.n_rows = meta.num_rows
        self._group_starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])

    @property
    def normalized(self) -> bool:
        return bool(self.manifest.get("normalized", True))

    @property
    def has_text(self) -> bool:
        return "text" in self.columns

    def code_batches(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, the stored rows as they are: float32, int8/uint8 codes or packed bits)."""
        offset = 0
        for batch in self._pf.iter_batches(batch_size=rows, columns=["embedding"]):
            col = batch.column(0)
            yield offset, col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), self.width)
            offset += len(col)

    def batches(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 (n, dims) unit vectors) over the whole index, ``rows`` at a time: codes
        are dequantised (bucket centres, or +1/-1 per bit) and normalised."""
        for offset, vecs in self.code_batches(rows):
            if self.precision != "float":
                vecs = l2_normalize(dequantize(vecs, self.precision, self.ranges, self.dims))
            yield offset, (vecs if self.normalized or self.precision != "float" else l2_normalize(vecs))

    def rows(self, positions: Sequence[int]) -> dict[int, dict]:
        """The id (and chunk, start, end, text where stored) of each row in ``positions``."""
        positions = np.unique(np.asarray(positions, dtype=np.int64))
        groups = np.searchsorted(self._group_starts, positions, side="right") - 1
        out: dict[int, dict] = {}
        for g in np.unique(groups):
            mine = positions[groups == g]
            table = self._pf.read_row_group(int(g), columns=self.columns).take(mine - self._group_starts[g])
            for pos, rec in zip(mine.tolist(), table.to_pylist()):
                out[pos] = rec
        return out


    def read_at(self, positions: np.ndarray, column: str) -> np.ndarray:
        """The rows of a fixed-size list column (``embedding``, ``rescore``) at ``positions``, in that order."""
        uniq, inverse = np.unique(np.asarray(positions, dtype=np.int64), return_inverse=True)
        groups = np.searchsorted(self._group_starts, uniq, side="right") - 1
        parts = []
        for g in np.unique(groups):
            col = self._pf.read_row_group(int(g), columns=[column]).column(0)
            col = col.take(uniq[groups == g] - self._group_starts[g]).combine_chunks()
            parts.append(col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size))
        return np.concatenate(parts)[inverse.ravel()]


def _read_manifest(path: Path) -> dict:
    man = path.with_name(path.name + MANIFEST_SUFFIX)
    if not man.is_file():
        raise SearchError(f"{path} has no manifest ({man.name} is missing); search needs the one gguf-embed encode "
                          "writes next to its output")
    try:
        manifest = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SearchError(f"cannot read {man}: {exc}") from None
    missing = [k for k in ("model_sha256", "dimensions") if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise SearchError(f"{man} is not a gguf-embed manifest (no {', '.join(missing)})")
    if manifest.get("format", "parquet") != "parquet":
        raise SearchError(f"{man} describes a {manifest['format']} output; search reads Parquet indexes")
    return manifest


def man_name(path: Path) -> str:
    return path.name + MANIFEST_SUFFIX


def stored_precision(manifest: dict, name: str) -> tuple[str, np.ndarray | None]:
    """The precision an index was written in, and its int8/uint8 ranges (checked against their sha256)."""
    precision = manifest.get("precision", "float")
    if precision not in PRECISIONS:
        raise SearchError(f"{name} names an unknown precision {precision!r}")
    if precision not in ("int8", "uint8"):
        return precision, None
    q = manifest.get("quantization") or {}
    try:
        ranges = np.array([q["ranges"]["min"], q["ranges"]["max"]], dtype=np.float32)
    except (KeyError, TypeError, ValueError):
        raise SearchError(f"{name} has no readable {precision} ranges (quantization.ranges)") from None
    if ranges_digest(ranges) != q.get("ranges_sha256"):
        raise SearchError(f"{name}: the {precision} ranges do not match their ranges_sha256; the manifest was edited")
    return precision, ranges


# --- exact search ----------------------------------------------------------------------------


def _scan(index: SearchIndex, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    best_s, best_r = np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    rows = int(np.clip(SCORE_BLOCK // max(len(q), 1), MIN_BATCH_ROWS, MAX_BATCH_ROWS))
    for offset, block in index.batches(rows):
        s = np.concatenate([best_s, q @ block.T], axis=1)
        r = np.concatenate([best_r, np.broadcast_to(np.arange(offset, offset + len(block)), (len(q), len(block)))],
                           axis=1)
        if s.shape[1] > k:
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
            s, r = np.take_along_axis(s, part, 1), np.take_along_axis(r, part, 1)
        best_s, best_r = s, r
    order = np.lexsort((best_r, -best_s), axis=-1)  # best first; equal scores in row order
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_r, order, 1)


def top_k_exact(index: SearchIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows), each (n_queries, min(k, rows)), best first: dot products with unit vectors."""
    q = l2_normalize(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if q.shape[1] != index.dims:
        raise SearchError(f"query vectors have {q.shape[1]} dims, the index {index.dims}")
    k = min(k, index.n_rows)
    group = max(1, SCORE_BLOCK // MIN_BATCH_ROWS)  # more queries than this: one pass over the file per group
    parts = [_scan(index, q[a:a + group], k) for a in range(0, len(q), group)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _hits(index: SearchIndex, scores: np.ndarray, rows: np.ndarray) -> list[list[Hit]]:
    meta = index.rows(rows[rows >= 0].ravel())
    out = []
    for s_row, r_row in zip(scores, rows):
        block = []
        for s, r in zip(s_row.tolist(), r_row.tolist()):
            if r < 0:  # an approximate index found fewer than k
                continue
            m = meta[r]
            block.append(Hit(len(block) + 1, m["id"], float(s), r, m.get("chunk"), m.get("start"), m.get("end"),
                             m.get("text")))
        out.append(block)
    return out


def search_vectors(index: SearchIndex | str | Path, queries: np.ndarray, top_k: int = 10, *,
                   faiss: str | None = None, probe: int | None = None, rescore: int | None = None) -> list[list[Hit]]:
    """Search with query vectors already in the index's space; ``faiss``: an index kind (hnsw, ivf).
    A binary index is searched by Hamming distance, its ``rescore`` x ``top_k`` nearest rescored
    with the float queries (``corpus.binary``)."""
    index = index if isinstance(index, SearchIndex) else SearchIndex(index)
    check_count(top_k, "top_k")
    check_count(rescore, "rescore")
    if index.n_rows == 0:
        return [[] for _ in np.atleast_2d(queries)]
    if faiss is None and index.precision.endswith("binary"):
        from .binary import DEFAULT_RESCORE, top_k_hamming

        scores, rows = top_k_hamming(index, queries, top_k, rescore or DEFAULT_RESCORE)
    elif faiss is not None:
        from .ann import faiss_top_k

        scores, rows = faiss_top_k(index, queries, top_k, kind=faiss, probe=probe)
    else:
        scores, rows = top_k_exact(index, queries, top_k)
    return _hits(index, scores, rows)


# --- the query's model ------------------------------------------------------------------------


model_sha256 = remembered_sha256


def index_model(index: SearchIndex, models_dir: str | Path | None = None) -> Path:
    """The GGUF that made ``index``: its ``model_file`` in the models dir or beside the index, else its model name."""
    from ..model.sources import resolve_model
    from ..registry import default_models_dir

    m = index.manifest
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    name, file = m.get("model"), m.get("model_file")
    for candidate in ([folder / file, index.path.parent / file] if file else []):
        if candidate.is_file():
            return candidate
    if name:
        try:
            return resolve_model(name, models_dir=folder)
        except GGUFEmbedError:
            pass
    raise SearchError(f"cannot find the model that made {index.path.name} ({name!r}, file {file!r}, looked in "
                      f"{folder}); give it with -m")


def check_embedder(emb, index: SearchIndex) -> None:
    """Refuse a model whose vectors are not in the index's space (another file, pooling or size)."""
    m = index.manifest
    sha = model_sha256(emb.info.path)
    if sha != m["model_sha256"]:
        raise SearchError(f"{emb.info.path.name} (sha256 {sha[:12]}) is not the model file that made "
                          f"{index.path.name} ({m.get('model_file')}, sha256 {m['model_sha256'][:12]}); "
                          "its vectors are in another space")
    if m.get("pooling") not in (None, emb.info.pooling):
        raise SearchError(f"{index.path.name} was made with {m['pooling']} pooling, the model now pools by "
                          f"{emb.info.pooling}")
    if index.dims > emb.dimensions:
        raise SearchError(f"{index.path.name} holds {index.dims}-dim vectors, more than {emb.info.path.name} gives")


def embed_queries(emb, index: SearchIndex, queries: Sequence[str], instruction: str | None = None) -> np.ndarray:
    """The queries as unit vectors in the index's space (the model's query prompt, the index's dimensions)."""
    dims = index.dims if index.dims != emb.dimensions else None
    return emb.embed(list(queries), input_type="query", instruction=instruction, dimensions=dims,
                     normalize=True, truncate=index.manifest.get("truncate") or "error").embeddings


# --- texts and reranking ----------------------------------------------------------------------


def _input_path(index: SearchIndex, name: str) -> Path:
    for p in (Path(name), index.path.parent / name):
        if name != "-" and p.exists():
            return p
    raise SearchError(f"{index.path.name} stores no text and its input {name!r} is not here any more; "
                      "the reranker needs the documents' texts")


def _corpus_texts(index: SearchIndex, ids: set[str]) -> dict[str, str]:
    from .readers import read_corpus

    m = index.manifest
    inputs = m.get("inputs") or []
    if not inputs:
        raise SearchError(f"{index.path.name} stores no text and its manifest names no input files")
    found: dict[str, str] = {}
    for name in inputs:
        prefix = f"{name}:" if len(inputs) > 1 else ""
        corpus = read_corpus([str(_input_path(index, name))], text_field=m.get("text_field") or "text",
                             id_field=m.get("id_field") or "id", input_format_name=m.get("input_format"),
                             skip_bad=True)
        found.update({prefix + r.id: r.text for r in corpus.records if prefix + r.id in ids})
    return found


def fill_texts(index: SearchIndex, blocks: list[list[Hit]]) -> list[list[Hit]]:
    """The hits with their texts: the index's ``text`` column, else the corpus its manifest names."""
    need = {h.id for block in blocks for h in block if h.text is None}
    if not need:
        return blocks
    docs = _corpus_texts(index, need)
    lost = sorted(need - set(docs))
    if lost:
        raise SearchError(f"document {lost[0]!r} is not in {', '.join(index.manifest['inputs'])} any more; "
                          "the reranker needs the documents' texts")
    return [[h if h.text is not None else replace(h, text=docs[h.id] if h.start is None else docs[h.id][h.start:h.end])
             for h in block] for block in blocks]


def rerank_hits(query: str, hits: list[Hit], reranker, top_n: int | None = None, instruction: str | None = None,
                truncate: str = "end") -> list[Hit]:
    """``hits`` rescored by ``reranker``, best first; ``similarity`` keeps the recall cosine."""
    ranked = reranker.rerank(query, [h.text for h in hits], top_n, instruction, truncate=truncate)
    return [replace(hits[i], rank=r, score=float(s), similarity=hits[i].score) for r, (i, s) in enumerate(ranked, 1)]


def search(index: SearchIndex | str | Path, queries: str | Sequence[str], embedder=None, top_k: int = 10,
           reranker=None, top_n: int | None = None, *, instruction: str | None = None,
           rerank_instruction: str | None = None, faiss: str | None = None, probe: int | None = None,
           rescore: int | None = None,
           models_dir: str | Path | None = None) -> list[list[Hit]]:
    """One block of hits per query, best first. ``embedder``: an open Embedder (default: the index's
    model, found by its manifest); ``reranker``: a Reranker or a model for one, rescoring the top-k
    and keeping ``top_n``; ``faiss``: approximate search with that FAISS index kind."""
    from ..embedder import Embedder
    from ..reranker import Reranker

    index = index if isinstance(index, SearchIndex) else SearchIndex(index)
    queries = [queries] if isinstance(queries, str) else list(queries)
    check_count(top_k, "top_k")
    check_count(top_n, "top_n")
    if not queries or not all(isinstance(q, str) and q.strip() for q in queries):
        raise SearchError("give at least one query, each a non-empty string", param="queries")
    with ExitStack() as stack:
        emb = embedder or stack.enter_context(Embedder(index_model(index, models_dir)))
        check_embedder(emb, index)
        vectors = embed_queries(emb, index, queries, instruction)
        blocks = search_vectors(index, vectors, top_k, faiss=faiss, probe=probe, rescore=rescore)
        if reranker is None:
            return blocks
        if isinstance(reranker, (str, Path)):
            reranker = stack.enter_context(Reranker(reranker))
        blocks = fill_texts(index, blocks)
        return [rerank_hits(q, hits, reranker, top_n, rerank_instruction) for q, hits in zip(queries, blocks)]

"""Importance matrices for quantising embedding models: collected, written and read in llama.cpp's
imatrix GGUF format, so ``llama-quantize --imatrix FILE`` reads ours and we read its.

The file (as tools/imatrix/imatrix.cpp writes it): ``general.type = "imatrix"``,
``imatrix.datasets`` (what it was computed on), ``imatrix.chunk_count`` and
``imatrix.chunk_size``, and per weight matrix ``NAME.in_sum2`` (F32, n_mat x n_in: each input
column's sum of squares) and ``NAME.counts`` (F32, n_mat x 1: input rows). Here a chunk is one
calibration sequence and ``chunk_size`` their mean length in tokens (rounded up).

Calibration runs the texts as they are embedded: each as a document and, when the model has a
query prompt, as a query too, through the model's own prompts, normaliser and special tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from .. import keys
from ..embedder import Embedder
from ..engine.importance import Importance, collect
from ..engine.settings import RuntimeSettings
from ..errors import ConversionError
from ..quality.calibration import DATASET_NAME, calibration_texts

__all__ = ["ImatrixFile", "calibrate", "write_imatrix", "read_imatrix", "quantize_metadata", "check_matches"]


@dataclass(frozen=True)
class ImatrixFile:
    importance: Importance
    datasets: tuple[str, ...]
    chunk_count: int
    path: Path | None = None


def calibrate(model: str | Path, texts: list[str] | None = None, *, dataset: str | None = None,
              threads: int | None = None, progress=None) -> ImatrixFile:
    """Embed ``texts`` (default: the built-in calibration set) with ``model`` and collect the importance
    of every weight matrix's inputs."""

    if texts is None:
        texts, dataset = calibration_texts(), dataset or DATASET_NAME
    if not texts:
        raise ConversionError("the calibration set has no texts")
    with Embedder(model, settings=RuntimeSettings(n_threads=threads)) as emb:
        seqs = emb.tokenize(texts, input_type="document", truncate="end")
        if emb.prompt_for("query", None) != emb.prompt_for("document", None):
            seqs += emb.tokenize(texts, input_type="query", truncate="end")
        imp = collect(emb.session, seqs, progress)
    return ImatrixFile(imp, (dataset or "calibration texts",), len(seqs))


def write_imatrix(path: Path, im: ImatrixFile) -> Path:
    """The importance matrix as llama.cpp's imatrix GGUF, written under a temporary name then renamed."""
    path = Path(path)
    imp = im.importance
    tmp = path.with_name(f".{path.name}.part")
    if not path.parent.is_dir():
        raise ConversionError(f"cannot write {path}: folder {path.parent} does not exist")
    w = gguf.GGUFWriter(str(tmp), arch="imatrix")
    try:
        w.add_type("imatrix")
        w.add_array(keys.IMATRIX_DATASETS, list(im.datasets))
        w.add_uint32(keys.IMATRIX_CHUNK_COUNT, im.chunk_count)
        w.add_uint32(keys.IMATRIX_CHUNK_SIZE, max(1, math.ceil(imp.tokens / max(im.chunk_count, 1))))
        w.add_uint32(keys.IMATRIX_TOKENS, imp.tokens)
        for name in sorted(imp.sums):
            sums = np.asarray(imp.sums[name], dtype=np.float32)
            w.add_tensor(f"{name}.in_sum2", sums)
            w.add_tensor(f"{name}.counts", np.full((sums.shape[0], 1), imp.counts[name], dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConversionError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        w.close()
    tmp.replace(path)
    return path


def read_imatrix(path: Path) -> ImatrixFile:
    """An imatrix GGUF (ours or llama-imatrix's); a one-line error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"importance matrix {path} does not exist")
    try:
        r = gguf.GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise ConversionError(f"{path} is not a GGUF importance matrix ({type(exc).__name__})") from None
    kind = _field(r, "general.type")
    if kind != "imatrix":
        raise ConversionError(f"{path} is not an importance matrix (general.type is {kind!r}, not 'imatrix')")
    tensors = {t.name: np.asarray(t.data, dtype=np.float64) for t in r.tensors}
    imp = Importance()
    for key, sums in tensors.items():
        if not key.endswith(".in_sum2"):
            continue
        name = key.removesuffix(".in_sum2")
        counts = tensors.get(f"{name}.counts")
        if counts is None:
            raise ConversionError(f"{path}: {name} has sums but no counts")
        n_mat = counts.size
        if len(set(counts.ravel().tolist())) > 1:
            raise ConversionError(f"{path}: {name} has per-expert counts, which gguf-embed does not quantise with")
        imp.sums[name] = sums.reshape(n_mat, -1)
        imp.counts[name] = int(round(float(counts.ravel()[0])))
    if not imp.sums:
        raise ConversionError(f"{path} holds no importance data")
    datasets = _field(r, keys.IMATRIX_DATASETS) or []
    datasets = tuple(datasets) if isinstance(datasets, list) else (str(datasets),)
    imp.sequences = int(_field(r, keys.IMATRIX_CHUNK_COUNT) or 0)
    imp.tokens = int(_field(r, keys.IMATRIX_TOKENS) or 0)
    return ImatrixFile(imp, datasets, imp.sequences, path)


def _field(r: gguf.GGUFReader, key: str):
    f = r.get_field(key)
    if f is None:
        return None
    value = f.contents()
    return value


def check_matches(im: ImatrixFile, model_gguf: Path) -> None:
    """Every entry names one of the model's weight matrices, with as many columns as it has inputs."""
    r = gguf.GGUFReader(str(model_gguf))
    widths = {t.name: int(t.shape[0]) * (int(t.shape[2]) if len(t.shape) > 2 else 1) for t in r.tensors}
    where = im.path or "the importance matrix"
    for name, sums in im.importance.sums.items():
        if name not in widths:
            raise ConversionError(f"{where} has an entry for {name}, which this model does not have; "
                                  "was it computed on another model?")
        if sums.size != widths[name]:
            raise ConversionError(f"{where}: {name} has {sums.size} columns, the model's weight {widths[name]}; "
                                  "was it computed on another model?")


def quantize_metadata(im: ImatrixFile, file_label: str) -> dict[str, str | int]:
    """The keys llama-quantize writes for an importance-weighted file, and ours."""
    return {
        keys.QUANTIZE_IMATRIX_FILE: file_label,
        keys.QUANTIZE_IMATRIX_DATASET: im.datasets[0] if im.datasets else "",
        keys.QUANTIZE_IMATRIX_ENTRIES: len(im.importance.sums),
        keys.QUANTIZE_IMATRIX_CHUNKS: im.chunk_count,
        keys.IMATRIX_TOKENS: im.importance.tokens,
    }

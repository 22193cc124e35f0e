"""Hugging Face safetensors -> GGUF for embedding models.

``convert_model(src, out, quant)`` where ``src`` is a local folder, a ``models.toml``
name or a Hub repo id. The output appears only when complete (written under a temporary
name in the same folder, then renamed); a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..choices import IMATRIX_AUTO, IMATRIX_REQUIRED, QUANT_MIXES
from ..engine.machine import resolve_quant
from ..errors import ConversionError
from ..model.tensor_table import default_mix
from ..registry import QUANT_TYPES, ModelEntry, Registry, load_registry
from .hf import REGISTRY_ARCHS, read_folder

SUPPORTED_ARCHS = REGISTRY_ARCHS
RERANK_ARCHS = ("qwen3", "bert", "xlm-roberta")
from ..errors import GGUFEmbedError
from ..text.files import read_lines
from .imatrix import (
    ImatrixFile,
    calibrate,
    check_matches,
    quantize_metadata,
    read_imatrix,
)
from .rerank import detect_task
from .writer import (
    DIRECT_TYPES,
    Overrides,
    quantize,
    separate_head_for,
    source_float_type,
    write_gguf,
)

__all__ = ["convert_model", "resolve_source", "ConversionResult", "HF_ALLOW_PATTERNS"]

#: Files a conversion needs from a Hub repo (no pickles, no ONNX/OpenVINO copies).
HF_ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "tokenizer.model",  # Gemma's SentencePiece model (see convert.spm)
    "1_Pooling/*",
    "2_Normalize/*",
    "sparse_linear.*",  # bge-m3's extra heads (see convert.m3_heads)
    "colbert_linear.*",
]


@dataclass(frozen=True)
class ConversionResult:
    path: Path
    quant: str
    size_bytes: int
    source: Path
    quant_choice: str | None = None  # why --quant auto picked ``quant``


def download(repo_id: str, revision: str | None) -> Path:
    """Fetch the files a conversion needs from the Hugging Face Hub (cached)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=HF_ALLOW_PATTERNS))
    except LocalEntryNotFoundError as exc:
        raise ConversionError(
            f"cannot download {repo_id} (offline or the Hub is unreachable, and it is not in the local cache): {exc}"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConversionError(f"cannot download {repo_id}@{revision or 'main'}: {first}") from None


def resolve_source(src: str, registry: Registry) -> tuple[Path, ModelEntry | None]:
    """A local folder, a registry name (package copy first, then the Hub) or a Hub repo id."""
    path = Path(src).expanduser()
    if path.is_dir():
        return path, next((e for e in registry if e.hub_id == path.name), None)
    if src in registry:
        entry = registry.get(src)
        if entry.architecture not in SUPPORTED_ARCHS:
            # say so before downloading gigabytes
            raise ConversionError(f"{entry.name}: the {entry.architecture} architecture is not supported by the converter yet")
        if entry.task == "rerank" and entry.architecture not in RERANK_ARCHS:
            raise ConversionError(f"{entry.name}: {entry.architecture} rerankers are not supported by the converter yet")
        local = entry.package_dir()
        return (local if local is not None else download(entry.hub_id, entry.revision)), entry
    if src.count("/") == 1 and not path.exists():
        entry = next((e for e in registry if e.hub_id == src), None)
        return download(src, entry.revision if entry else None), entry
    raise ConversionError(f"{src} is neither a model folder, a models.toml name nor a Hub repo id")


def convert_model(
    src: str | os.PathLike,
    out: str | os.PathLike,
    quant: str = "F16",  # or "auto"
    *,
    registry: Registry | None = None,
    pooling: str | None = None,
    max_tokens: int | None = None,
    matryoshka_min: int | None = None,
    task: str | None = None,
    allow_pickle: bool = False,
    threads: int | None = None,
    progress=None,
    imatrix: str | os.PathLike | None = None,
    calibration: str | os.PathLike | None = None,
    mix: str | None = None,
) -> ConversionResult:
    """``imatrix``: quantise with importance weights, computed here (``"auto"``: on the built-in
    calibration texts, or on ``calibration``, a file of one text per line) or read from an imatrix GGUF;
    ``mix``: a quantised file's tensor mixture (``choices.QUANT_MIXES``, ``model.tensor_table.default_mix``)."""
    quant, why = resolve_quant(quant)  # "auto": this machine's fastest lossless type
    if quant not in QUANT_TYPES:
        raise ConversionError(f"unknown quantisation type {quant}; choose one of {', '.join(QUANT_TYPES)}")
    check_imatrix_args(quant, imatrix, calibration, mix)
    given = read_imatrix(Path(imatrix)) if imatrix is not None and str(imatrix) != IMATRIX_AUTO else None
    registry = registry or load_registry()
    folder, entry = resolve_source(str(src), registry)
    hf = read_folder(folder)
    ov = Overrides(
        pooling=pooling or (entry.pooling if entry else None),
        max_tokens=max_tokens or (entry.max_tokens if entry else None),
        matryoshka_min=matryoshka_min or (entry.matryoshka_min if entry else None),
        prompts=tuple(entry.prompts.items()) if entry else (),
        registry_name=entry.name if entry else None,
        task=task or (entry.task if entry else None),
        quant_choice=f"--quant auto: {why}" if why else None,
    )
    out = Path(out)
    if out.is_dir():
        raise ConversionError(f"{out} is a folder; give the output file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    stage = tmp.with_suffix(".src.gguf")
    try:
        if quant in DIRECT_TYPES:
            write_gguf(hf, tmp, quant, ov, allow_pickle=allow_pickle, progress=progress)
        else:
            head = separate_head_for(hf)
            write_gguf(hf, stage, source_float_type(hf, allow_pickle), ov, allow_pickle=allow_pickle, progress=progress,
                       separate_head=head)
            weights = importance_for(stage, given, imatrix, calibration, threads) if imatrix is not None else None
            quantize(stage, tmp, quant, threads, head_for_width=int(hf.config["hidden_size"]) if head else None,
                     importance=weights, mix=mix or default_mix(detect_task(hf, ov.task)))
        _publish(tmp, out)
    finally:
        for leftover in (tmp, stage):
            leftover.unlink(missing_ok=True)
    return ConversionResult(out, quant, out.stat().st_size, folder, ov.quant_choice)


def _publish(tmp: Path, out: Path) -> None:
    """The finished file under its name, with the permissions a new file would have."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, out)


def check_imatrix_args(quant: str, imatrix, calibration, mix: str | None = None) -> None:
    if mix is not None and mix not in QUANT_MIXES:
        raise ConversionError(f"unknown tensor mix {mix}; choose one of {', '.join(QUANT_MIXES)}")
    if imatrix is not None and quant in DIRECT_TYPES:
        raise ConversionError(f"{quant} is not quantised; an importance matrix applies to Q8_0 and smaller types")
    if calibration is not None and (imatrix is None or str(imatrix) != IMATRIX_AUTO):
        raise ConversionError("`calibration` gives the texts for `imatrix` auto; use them together")
    if quant in IMATRIX_REQUIRED and imatrix is None:
        raise ConversionError(f"llama.cpp quantises {quant} only with an importance matrix; add `imatrix` auto")


def calibration_file(path: str | os.PathLike) -> list[str]:
    try:
        texts = read_lines([str(path)])
    except GGUFEmbedError as exc:
        raise ConversionError(f"cannot read the calibration texts: {exc.message}") from None
    if not texts:
        raise ConversionError(f"{path} has no texts to calibrate on")
    return texts


def importance_for(stage: Path, given: ImatrixFile | None, imatrix, calibration, threads: int | None):
    """(mean squares per weight, metadata for the output) from a file or computed on ``stage``."""
    if given is None:
        texts = calibration_file(calibration) if calibration is not None else None
        given = calibrate(stage, texts, dataset=str(calibration) if calibration is not None else None, threads=threads)
        label = IMATRIX_AUTO
    else:
        check_matches(given, stage)
        label = Path(imatrix).name
    return given.importance.mean_squares(), quantize_metadata(given, label)

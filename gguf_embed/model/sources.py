"""Where a model string's GGUF lives, and which GGUFs this machine already has.

``resolve_model`` takes what ``-m`` / ``Embedder(...)`` is given:

- a path to a GGUF (checked to start like one);
- ``hf:OWNER/REPO/FILE.gguf`` or ``hf:OWNER/REPO:QUANT``: the copy in ``MODELS_DIR/hf/OWNER/REPO/``,
  downloaded on first use (``model.hub``);
- ``ollama:NAME[:TAG]`` (``ollama:NAMESPACE/NAME:TAG``, ``ollama:HOST/NAMESPACE/NAME:TAG``): the model
  blob in Ollama's store (``$OLLAMA_MODELS``, else ``~/.ollama/models``), used in place. The store is
  read as Ollama writes it: ``manifests/HOST/NAMESPACE/NAME/TAG`` holds the image manifest JSON, whose
  layer of mediaType ``application/vnd.ollama.image.model`` names the GGUF ``blobs/sha256-<hex>``;
- a ``models.toml`` name: its converted (``NAME-QUANT.gguf``) or pulled file in the models dir.

``list_local`` finds the GGUFs already here: the models dir, LM Studio's folder and Ollama's store.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .. import choices, keys
from ..errors import GGUFEmbedError, ModelLoadError, ModelNotFoundError
from ..registry import ModelEntry, Registry, default_models_dir, load_registry
from .gguf_file import GGUF_MAGIC, check_gguf_file, file_type_name, read_gguf
from .hub import HF_PREFIX, HFRef, fetch_hf, hf_folder, is_extra_part, matches_quant, parse_hf

__all__ = ["resolve_model", "pull", "registry_files", "ollama_dir", "parse_ollama", "ollama_name", "resolve_ollama",
           "ollama_models", "lmstudio_dirs", "LocalModel", "list_local", "OLLAMA_PREFIX"]

OLLAMA_PREFIX = "ollama:"
OLLAMA_HOST, OLLAMA_NAMESPACE, OLLAMA_TAG = "registry.ollama.ai", "library", "latest"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
_OLLAMA_PART = re.compile(r"[A-Za-z0-9_][\w.-]*")
_OLLAMA_DIGEST = re.compile(r"sha256[:-][0-9a-fA-F]{64}")


def resolve_model(model: str | Path, *, registry: Registry | None = None, models_dir: Path | None = None) -> Path:
    """The GGUF file ``model`` names (see the module docstring); one-line errors otherwise."""
    text = str(model)
    path = Path(text).expanduser()
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    if text.startswith(HF_PREFIX) and not path.exists():
        return _checked(fetch_hf(parse_hf(text), folder))
    if text.startswith(OLLAMA_PREFIX) and not path.exists():
        return resolve_ollama(text)
    if path.exists() or path.suffix == ".gguf" or "/" in text:
        check_gguf_file(path)
        return path
    entry = (registry or load_registry()).get(text)
    found = registry_files(entry, folder)
    if found:
        return found[0]
    if entry.gguf is not None:
        raise ModelNotFoundError(f"model {entry.name!r} is not pulled or converted yet (looked in {folder}); run: "
                                 f"gguf-embed pull {entry.name} (a ready GGUF from {entry.gguf.repo}), or "
                                 f"gguf-embed convert {entry.name}", param="model")
    raise ModelNotFoundError(f"model {entry.name!r} is not converted yet (looked in {folder}); run: "
                             f"gguf-embed convert {entry.name}", param="model")


def _checked(path: Path) -> Path:
    check_gguf_file(path)
    return path


def registry_files(entry: ModelEntry, folder: Path) -> list[Path]:
    """A ``models.toml`` entry's GGUFs in the models dir, best first: converted at its default quantisation,
    pulled at it, then the other converted and pulled ones."""
    folder = Path(folder)
    converted = sorted(folder.glob(f"{entry.name}-*.gguf"))
    pulled: list[Path] = []
    if entry.gguf is not None and hf_folder(folder, entry.gguf.repo).is_dir():
        pulled = _gguf_files(hf_folder(folder, entry.gguf.repo))
    first = [p for q in entry.default_quants() for p in converted if p.name == entry.gguf_filename(q)]
    for q in entry.default_quants():
        wanted = entry.gguf.files.get(q) if entry.gguf else None
        first += [p for p in pulled if p.name == wanted or (wanted is None and matches_quant(p.name, q))]
    return first + [p for p in converted + pulled if p not in first]


def pull(model: str, *, quant: str | None = None, registry: Registry | None = None,
         models_dir: Path | None = None) -> Path:
    """The ready GGUF of a ``models.toml`` entry (or an ``hf:`` spec) in the models dir, downloaded if need be."""
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    if model.startswith(HF_PREFIX):
        ref = parse_hf(model)
        if quant and not ref.filename:
            ref = HFRef(ref.repo, None, quant.upper())
        return _checked(fetch_hf(ref, folder))
    entry = (registry or load_registry()).get(model)
    if entry.gguf is None:
        raise ModelNotFoundError(f"models.toml names no ready GGUF of {entry.name}; run: gguf-embed convert "
                                 f"{entry.name}", param="model")
    q = (quant or entry.default_quant).upper()
    if q == choices.AUTO_QUANT:  # a ready file of either lossless type, the one the repo lists first
        q = next((t for t in choices.LOSSLESS_TYPES if t in entry.gguf.files), choices.LOSSLESS_TYPES[-1])
    file = entry.gguf.files.get(q)
    return _checked(fetch_hf(HFRef(entry.gguf.repo, file, None if file else q), folder, fallback_quant=q))


# --- Ollama's store --------------------------------------------------------------------------


def ollama_dir() -> Path:
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".ollama" / "models"


def parse_ollama(spec: str) -> tuple[str, str, str, str]:
    """``[HOST/][NAMESPACE/]NAME[:TAG]`` -> (host, namespace, name, tag), Ollama's defaults filled in."""
    body = spec[len(OLLAMA_PREFIX):] if spec.startswith(OLLAMA_PREFIX) else spec
    name, tag = body, OLLAMA_TAG
    if body.rfind(":") > body.rfind("/"):
        name, tag = body[:body.rfind(":")], body[body.rfind(":") + 1:]
    parts = name.split("/")
    full = [OLLAMA_HOST, OLLAMA_NAMESPACE][:max(0, 3 - len(parts))] + parts
    ok = len(full) == 3 and all(_OLLAMA_PART.fullmatch(p) for p in full[1:] + [tag]) and \
        re.fullmatch(r"[\w.-]+(:\d+)?", full[0]) is not None
    if not ok:
        raise ModelNotFoundError(f"cannot read {spec!r}: expected ollama:NAME[:TAG] or ollama:NAMESPACE/NAME:TAG",
                                 param="model")
    return full[0], full[1], full[2], tag


def _ollama_display(host: str, namespace: str, name: str, tag: str) -> str:
    """The shortest name Ollama itself shows (``qwen3-embedding:0.6b``, ``user/model:tag``)."""
    if host.lower() != OLLAMA_HOST:
        return f"{host}/{namespace}/{name}:{tag}"
    return f"{name}:{tag}" if namespace.lower() == OLLAMA_NAMESPACE else f"{namespace}/{name}:{tag}"


def ollama_name(spec: str) -> str:
    """The name Ollama shows for ``ollama:NAME[:TAG]`` (``qwen3-embedding:latest``)."""
    return _ollama_display(*parse_ollama(spec))


def _child(folder: Path, name: str) -> Path | None:
    exact = folder / name
    if exact.exists():
        return exact
    if folder.is_dir():  # older Ollama versions wrote the path lower-cased
        return next((p for p in folder.iterdir() if p.name.lower() == name.lower()), None)
    return None


def ollama_models(root: Path | None = None) -> Iterator[tuple[str, Path]]:
    """(display name, manifest path) of every model in Ollama's store."""
    manifests = (root or ollama_dir()) / "manifests"
    if not manifests.is_dir():
        return
    for path in sorted(manifests.glob("*/*/*/*")):
        if path.is_file():
            host, namespace, name, tag = path.relative_to(manifests).parts
            yield _ollama_display(host, namespace, name, tag), path


def resolve_ollama(spec: str) -> Path:
    """The GGUF blob of an Ollama model, in place."""
    root = ollama_dir()
    parts = parse_ollama(spec)
    display = _ollama_display(*parts)
    manifest: Path | None = root / "manifests"
    for part in parts:
        manifest = _child(manifest, part) if manifest is not None else None
    if manifest is None or not manifest.is_file():
        have = [name for name, _ in ollama_models(root)]
        there = f"it has {', '.join(have)}" if have else "it has no models"
        raise ModelNotFoundError(f"Ollama has no model {display} in {root} ({there}); run: ollama pull {display}",
                                 param="model")
    return _model_blob(root, manifest, display)


def _model_blob(root: Path, manifest: Path, display: str) -> Path:
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
    except (OSError, ValueError, AttributeError):
        raise ModelLoadError(f"cannot read Ollama's manifest {manifest}") from None
    digests = [str(layer.get("digest", "")) for layer in layers
               if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER]
    if not digests:
        raise ModelLoadError(f"Ollama's {display} has no model layer ({OLLAMA_MODEL_LAYER}) in {manifest}")
    if not all(_OLLAMA_DIGEST.fullmatch(d) for d in digests):
        raise ModelLoadError(f"Ollama's manifest {manifest} has a malformed layer digest")
    blobs = [root / "blobs" / d.replace(":", "-") for d in digests]
    missing = [b for b in blobs if not b.is_file()]
    if missing:
        raise ModelNotFoundError(f"Ollama's {display} lacks its blob {missing[0]}; run: ollama pull {display}",
                                 param="model")
    with open(blobs[0], "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelLoadError(f"Ollama's {display} is not a GGUF model ({blobs[0]})")
    # a model split over several GGUF layers: llama.cpp is pointed at the first split
    return next((b for b in blobs if len(blobs) > 1 and read_gguf(b).meta.get("split.no") == 0), blobs[0])


# --- what is here --------------------------------------------------------------------------


def lmstudio_dirs() -> list[Path]:
    """LM Studio's models folders (PUBLISHER/REPO/FILE.gguf below each): the current one and the older one."""
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


@dataclass(frozen=True)
class LocalModel:
    name: str  # what to pass to -m
    source: str  # "models-dir" | "lmstudio" | "ollama"
    path: Path
    size: int
    arch: str | None = None
    title: str | None = None  # general.name
    task: str | None = None  # "embed" | "rerank" | None (not an embedding model as far as the file says)
    pooling: str | None = None
    quant: str | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "path": str(self.path)}


def _gguf_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.gguf") if p.is_file() and not is_extra_part(p.name)
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _describe(name: str, source: str, path: Path) -> LocalModel | None:
    """A row from the file's metadata alone; None for a file that is not a readable GGUF."""
    try:
        meta = read_gguf(path).meta
        size = path.stat().st_size
    except (GGUFEmbedError, OSError):
        return None
    arch = meta.get(keys.ARCH)
    pid = meta.get(keys.arch_key(str(arch), "pooling_type"))
    pooling = keys.POOLING_NAMES.get(int(pid)) if isinstance(pid, int) else None
    task = meta.get(keys.TASK) or ("rerank" if pooling == "rank" else "embed" if pooling in choices.POOLINGS else None)
    title = meta.get("general.name")
    return LocalModel(name, source, path, size, str(arch) if arch else None, str(title) if title else None,
                      str(task) if task else None, pooling, file_type_name(meta.get(keys.FILE_TYPE)))


def list_local(models_dir: Path | None = None) -> list[LocalModel]:
    """Every GGUF already on this machine: the models dir (converted and pulled files), LM Studio's
    folders and Ollama's store (each model whose model layer is a GGUF)."""
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    found = []
    for path in _gguf_files(folder):
        rel = path.relative_to(folder).parts
        name = HF_PREFIX + "/".join(rel[1:]) if rel[0] == "hf" and len(rel) > 3 else str(path)
        found.append(_describe(name, "models-dir", path))
    for root in lmstudio_dirs():
        found += [_describe(str(path), "lmstudio", path) for path in _gguf_files(root)]
    root = ollama_dir()
    for display, manifest in ollama_models(root):
        try:
            blob = _model_blob(root, manifest, display)
        except GGUFEmbedError:
            continue  # a safetensors-based model, a broken manifest
        found.append(_describe(OLLAMA_PREFIX + display, "ollama", blob))
    return [row for row in found if row is not None]

"""The model registry: ``models.toml`` parsed once into frozen, validated dataclasses."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .errors import ModelNotFoundError, RegistryError
from .choices import ARCHITECTURES, AUTO_QUANT, LOSSLESS_TYPES, POOLINGS, QUANT_TYPES, TASKS

__all__ = ["Shape", "GGUFSource", "ModelEntry", "Family", "Registry", "load_registry", "default_models_dir",
           "QUANT_TYPES"]


@dataclass(frozen=True)
class Shape:
    """Exact transformer shapes of a model, enough to build a random stand-in."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    kv_heads: int | None = None
    head_dim: int | None = None
    tie_embeddings: bool = True


@dataclass(frozen=True)
class GGUFSource:
    """A ready GGUF of the model on the Hugging Face Hub: the repo and, where known, the file per
    quantisation (other quantisations are picked from the repo's file list by their tag)."""

    repo: str
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def hf_spec(self, quant: str) -> str:
        """``hf:REPO/FILE`` when the file for ``quant`` is known, else ``hf:REPO:QUANT``."""
        q = quant.upper()
        return f"hf:{self.repo}/{self.files[q]}" if q in self.files else f"hf:{self.repo}:{q}"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    hub_id: str
    architecture: str
    pooling: str
    dims: int
    max_tokens: int
    default_quant: str
    license: str
    revision: str | None = None
    package: str | None = None
    matryoshka_min: int | None = None
    prompts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    shape: Shape | None = None
    task: str = "embed"  # "rerank": a reranker (pooling then names the token its head reads)
    gguf: GGUFSource | None = None  # a ready GGUF on the Hub (``gguf-embed pull``)

    def gguf_filename(self, quant: str | None = None) -> str:
        """The converted file's name at ``quant`` (default: the entry's; "auto" must be resolved
        first: the file is named after the type it holds)."""
        q = (quant or self.default_quant).upper()
        if q == AUTO_QUANT:
            raise ValueError(f"{self.name}: resolve --quant auto to a type before naming the file")
        return f"{self.name}-{q}.gguf"

    def default_quants(self) -> tuple[str, ...]:
        """The types a converted file at the default quantisation may hold (auto: either lossless type)."""
        return LOSSLESS_TYPES if self.default_quant == AUTO_QUANT else (self.default_quant,)

    def package_dir(self) -> Path | None:
        """Folder of the weights shipped inside an installed Python package, if any."""
        if not self.package:
            return None
        import importlib.util

        top, _, rest = self.package.partition("/")
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / rest
        return path if path.is_dir() else None


@dataclass(frozen=True)
class Family:
    """How a family's third-party GGUFs look (``match``) and what gguf-embed fills in for them."""

    name: str
    task: str
    match: Mapping[str, object]
    prompts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    text_normalizer: str | None = None
    eos: str | None = None  # the token every framed input must end with (appended if the tokenizer does not)
    max_tokens: int | None = None
    matryoshka_min: int | None = None
    rerank_instruction: str | None = None


FAMILY_KEYS = ("task", "match", "prompts", "text_normalizer", "eos", "max_tokens", "matryoshka_min",
               "rerank_instruction")
MATCH_KEYS = ("architecture", "pooling", "tokenizer", "names", "cls_labels", "lowercase", "head")


@dataclass(frozen=True)
class Registry:
    models: Mapping[str, ModelEntry]
    default: str
    source: Path
    families: Mapping[str, Family] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ModelNotFoundError(f"unknown model {name!r}; known models: {known}", param="model") from None

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def __iter__(self):
        return iter(self.models.values())


def _entry(name: str, raw: dict, source: Path) -> ModelEntry:
    where = f"{source}: model {name!r}"
    required = ("hub_id", "architecture", "pooling", "dims", "max_tokens", "default_quant", "license")
    missing = [k for k in required if k not in raw]
    if missing:
        raise RegistryError(f"{where} lacks {', '.join(missing)}")
    allowed = set(required) | {"revision", "package", "matryoshka_min", "prompts", "shape", "task", "gguf"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise RegistryError(f"{where} has unknown keys {', '.join(unknown)}")
    if raw["architecture"] not in ARCHITECTURES:
        raise RegistryError(f"{where}: architecture must be one of {', '.join(ARCHITECTURES)}")
    if raw["pooling"] not in POOLINGS:
        raise RegistryError(f"{where}: pooling must be one of {', '.join(POOLINGS)}")
    if raw.get("task", "embed") not in TASKS:
        raise RegistryError(f"{where}: task must be one of {', '.join(TASKS)}")
    if str(raw["default_quant"]).upper() not in (AUTO_QUANT, *QUANT_TYPES):
        raise RegistryError(f"{where}: default_quant must be auto or one of {', '.join(QUANT_TYPES)}")
    dims, mmin = int(raw["dims"]), raw.get("matryoshka_min")
    if dims <= 0 or int(raw["max_tokens"]) <= 0:
        raise RegistryError(f"{where}: dims and max_tokens must be positive")
    if mmin is not None and not 0 < int(mmin) <= dims:
        raise RegistryError(f"{where}: matryoshka_min must lie in 1..{dims}")
    prompts = raw.get("prompts", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise RegistryError(f"{where}: prompts must map names to strings")
    shape = None
    if "shape" in raw:
        try:
            shape = Shape(**raw["shape"])
        except TypeError as exc:
            raise RegistryError(f"{where}: bad shape table ({exc})") from None
        if shape.hidden != dims:
            raise RegistryError(f"{where}: shape.hidden {shape.hidden} differs from dims {dims}")
    return ModelEntry(
        name=name,
        hub_id=str(raw["hub_id"]),
        architecture=raw["architecture"],
        pooling=raw["pooling"],
        dims=dims,
        max_tokens=int(raw["max_tokens"]),
        default_quant=str(raw["default_quant"]).upper(),
        license=str(raw["license"]),
        revision=raw.get("revision"),
        package=raw.get("package"),
        matryoshka_min=int(mmin) if mmin is not None else None,
        prompts=MappingProxyType(dict(prompts)),
        shape=shape,
        task=raw.get("task", "embed"),
        gguf=_gguf_source(raw["gguf"], where) if "gguf" in raw else None,
    )


def _family(name: str, raw: dict, source: Path) -> Family:
    where = f"{source}: family {name!r}"
    unknown = sorted(set(raw) - set(FAMILY_KEYS))
    if unknown:
        raise RegistryError(f"{where} has unknown keys {', '.join(unknown)}")
    match = raw.get("match")
    if not isinstance(match, dict) or not match:
        raise RegistryError(f"{where} needs a match table")
    bad = sorted(set(match) - set(MATCH_KEYS))
    if bad:
        raise RegistryError(f"{where}: unknown match keys {', '.join(bad)} (known: {', '.join(MATCH_KEYS)})")
    if raw.get("task", "embed") not in TASKS:
        raise RegistryError(f"{where}: task must be one of {', '.join(TASKS)}")
    return Family(name=name, task=raw.get("task", "embed"), match=MappingProxyType(dict(match)),
                  prompts=MappingProxyType(dict(raw.get("prompts", {}))), text_normalizer=raw.get("text_normalizer"),
                  eos=raw.get("eos"), max_tokens=raw.get("max_tokens"), matryoshka_min=raw.get("matryoshka_min"),
                  rerank_instruction=raw.get("rerank_instruction"))


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_QUANT_TAG = re.compile(r"[A-Za-z0-9_]+")


def _gguf_source(raw, where: str) -> GGUFSource:
    """``gguf = { repo = "OWNER/REPO", files = { Q8_0 = "FILE.gguf", ... } }``, checked."""
    if not isinstance(raw, dict) or not isinstance(raw.get("repo"), str):
        raise RegistryError(f"{where}: gguf must be a table with a repo string")
    unknown = sorted(set(raw) - {"repo", "files"})
    if unknown:
        raise RegistryError(f"{where}: gguf has unknown keys {', '.join(unknown)}")
    if not _REPO_ID.fullmatch(raw["repo"]):
        raise RegistryError(f"{where}: gguf.repo must look like OWNER/REPO, not {raw['repo']!r}")
    files = raw.get("files", {})
    if not isinstance(files, dict):
        raise RegistryError(f"{where}: gguf.files must map quantisations to file names")
    for quant, name in files.items():
        if not _QUANT_TAG.fullmatch(quant):
            raise RegistryError(f"{where}: gguf.files key {quant!r} is not a quantisation tag (e.g. Q8_0, F16)")
        if not isinstance(name, str) or not name.lower().endswith(".gguf") or name.startswith("/") or \
                ".." in name.split("/"):
            raise RegistryError(f"{where}: gguf.files.{quant} must be a .gguf file name in the repo")
    return GGUFSource(raw["repo"], MappingProxyType({q.upper(): n for q, n in files.items()}))


def _default_registry_path() -> Path:
    return Path(__file__).resolve().parent / "models.toml"


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Parse and validate a ``models.toml`` (the bundled one by default)."""
    source = Path(path) if path is not None else _default_registry_path()
    try:
        with open(source, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise RegistryError(f"model registry {source} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"model registry {source} is not valid TOML: {exc}") from None
    models = {name: _entry(name, raw, source) for name, raw in data.get("models", {}).items()}
    default = data.get("default", next(iter(models), ""))
    if default not in models:
        raise RegistryError(f"{source}: default model {default!r} is not defined")
    families = {name: _family(name, raw, source) for name, raw in data.get("families", {}).items()}
    return Registry(models=MappingProxyType(models), default=default, source=source,
                    families=MappingProxyType(families))


def default_models_dir() -> Path:
    """Where converted GGUFs live: ``$GGUF_EMBED_MODELS`` or ``~/.cache/gguf-embed/models``."""
    env = os.environ.get("GGUF_EMBED_MODELS")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gguf-embed" / "models"

"""What a GGUF says about embedding with it, and where a model name's GGUF lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from . import keys, textnorm
from .errors import ModelLoadError, ModelNotFoundError
from .registry import Registry, default_models_dir, load_registry

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    arch: str
    n_embd: int
    n_layer: int
    n_ctx_train: int
    pooling: str
    causal: bool
    max_tokens: int
    matryoshka_min: int | None
    prompts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    text_normalizer: str = "none"
    task: str = "embed"  # "embed" | "rerank"

    @property
    def dimension_range(self) -> tuple[int, int]:
        return (self.matryoshka_min or self.n_embd, self.n_embd)

    @classmethod
    def from_meta(cls, path: Path, meta: dict[str, str], *, n_embd: int, n_layer: int, n_ctx_train: int,
                  pooling_override: str | None = None) -> "ModelInfo":
        arch = meta.get("general.architecture", "?")
        pooling_id = int(meta.get(f"{arch}.pooling_type", "0") or 0)
        pooling = pooling_override or keys.POOLING_NAMES.get(pooling_id)
        task = meta.get(keys.TASK) or ("rerank" if pooling == "rank" else "embed")
        if pooling == "rank":
            # a rerank head reads the classification token: the last one of a decoder, [CLS] of an encoder
            pooling = "cls" if arch in ("bert", "nomic-bert", "xlm-roberta") else "last"
        if pooling in (None, "none"):
            # llama.cpp's own converter writes no pooling for plain decoder models
            pooling = "last" if arch.startswith("qwen") else "mean"
        causal = meta.get(f"{arch}.attention.causal", "true" if arch not in ("bert", "nomic-bert") else "false")
        prompts = {k[len(keys.PROMPT):]: v for k, v in meta.items() if k.startswith(keys.PROMPT)}
        mmin = meta.get(keys.MATRYOSHKA_MIN)
        max_tokens = int(meta.get(keys.MAX_TOKENS, n_ctx_train) or n_ctx_train)
        name = meta.get(keys.REGISTRY_NAME) or path.stem
        return cls(
            path=path,
            name=name,
            arch=arch,
            n_embd=n_embd,
            n_layer=n_layer,
            n_ctx_train=n_ctx_train,
            pooling=pooling,
            causal=causal == "true",
            max_tokens=min(max_tokens, n_ctx_train),
            matryoshka_min=int(mmin) if mmin else None,
            prompts=MappingProxyType(prompts),
            text_normalizer=_text_normalizer(path, meta.get(keys.TEXT_NORMALIZER, "none")),
            task=task,
        )


def _text_normalizer(path: Path, value: str) -> str:
    try:
        textnorm.parse(value)
    except textnorm.UnsupportedNormalizer as exc:
        raise ModelLoadError(f"{path}: {exc}; a newer gguf-embed may read this file") from None
    return value


def check_gguf_file(path: Path) -> None:
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist", param="model")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file")


def resolve_model(model: str | Path, *, registry: Registry | None = None, models_dir: Path | None = None) -> Path:
    """A GGUF path as given, or the converted GGUF of a ``models.toml`` name."""
    path = Path(model).expanduser()
    if path.exists() or path.suffix == ".gguf" or "/" in str(model):
        check_gguf_file(path)
        return path
    registry = registry or load_registry()
    entry = registry.get(str(model))
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    preferred = folder / entry.gguf_filename()
    if preferred.is_file():
        return preferred
    others = sorted(folder.glob(f"{entry.name}-*.gguf"))
    if others:
        return others[0]
    raise ModelNotFoundError(
        f"model {entry.name!r} is not converted yet (looked in {folder}); run: gguf-embed convert {entry.name}",
        param="model",
    )

"""What a GGUF says about embedding or reranking with it (one ``ModelInfo``). Read from the file's
metadata alone: no llama.cpp, no weights. Where a model name's GGUF lives is ``sources.resolve_model``
(re-exported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .. import vocab
from ..errors import ModelLoadError
from ..text import normalize
from .archs import arch as arch_row
from .gguf_file import GGUFFile, check_gguf_file, file_type_name, read_gguf
from .sources import resolve_model

__all__ = ["ModelInfo", "RerankTemplate", "resolve_model", "check_gguf_file"]


@dataclass(frozen=True)
class RerankTemplate:
    """A decoder reranker's prompt: prefix + body + suffix, each tokenised on its own; the body has
    ``{instruction}``, ``{query}`` and ``{document}``, and only the document is ever cut."""

    prefix: str
    body: str
    suffix: str
    default_instruction: str | None = None

    @property
    def takes_instruction(self) -> bool:
        return "{instruction}" in self.body


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
    rerank: RerankTemplate | None = None  # decoder rerankers: the pair template
    type1_offset: int = 0  # cross-encoders: token id + offset = the same token in segment 1
    file_type: int | None = None  # general.file_type (llama.cpp's LLAMA_FTYPE)

    @property
    def file_type_name(self) -> str | None:
        """``general.file_type`` as llama.cpp names it (F16, Q8_0, Q4_K_M...)."""
        return file_type_name(self.file_type)

    @property
    def dimension_range(self) -> tuple[int, int]:
        return (self.matryoshka_min or self.n_embd, self.n_embd)

    @classmethod
    def from_file(cls, gguf: GGUFFile, *, pooling_override: str | None = None) -> "ModelInfo":
        meta, path = gguf.meta, gguf.path
        arch = str(meta.get(vocab.ARCH, "?"))
        row = arch_row(arch)

        def num(key: str, default: int = 0) -> int:
            value = meta.get(vocab.arch_key(arch, key), default)
            return int(value) if isinstance(value, (int, float)) else default

        pooling = pooling_override or vocab.POOLING_NAMES.get(num("pooling_type"))
        task = meta.get(vocab.TASK) or ("rerank" if pooling == "rank" else "embed")
        if pooling == "rank":
            pooling = row.rank_token  # a rerank head reads the classification token
        if pooling in (None, "none"):
            pooling = row.default_pooling  # llama.cpp's converter writes no pooling for plain decoders
        n_ctx_train = num("context_length")
        max_tokens = int(meta.get(vocab.MAX_TOKENS, n_ctx_train) or n_ctx_train)
        mmin = meta.get(vocab.MATRYOSHKA_MIN)
        return cls(
            path=path, name=str(meta.get(vocab.REGISTRY_NAME) or path.stem), arch=arch,
            n_embd=num("embedding_length"), n_layer=num("block_count"), n_ctx_train=n_ctx_train, pooling=pooling,
            causal=bool(meta.get(vocab.arch_key(arch, "attention.causal"), row.causal)),
            max_tokens=min(max_tokens, n_ctx_train), matryoshka_min=int(mmin) if mmin else None,
            prompts=MappingProxyType(_prompts(meta)),
            text_normalizer=_text_normalizer(path, str(meta.get(vocab.TEXT_NORMALIZER, "none"))),
            task=str(task), rerank=_rerank_template(meta), type1_offset=int(meta.get(vocab.TYPE1_OFFSET, 0) or 0),
            file_type=meta.get(vocab.FILE_TYPE),
        )


def _prompts(meta: Mapping[str, Any]) -> dict[str, str]:
    return {k[len(vocab.PROMPT):]: str(v) for k, v in meta.items() if k.startswith(vocab.PROMPT)}


def _rerank_template(meta: Mapping[str, Any]) -> RerankTemplate | None:
    body = meta.get(vocab.RERANK_BODY)
    if body is None:
        return None
    return RerankTemplate(str(meta.get(vocab.RERANK_PREFIX, "")), str(body), str(meta.get(vocab.RERANK_SUFFIX, "")),
                          meta.get(vocab.RERANK_INSTRUCTION))


def _text_normalizer(path: Path, value: str) -> str:
    try:
        normalize.parse(value)
    except normalize.UnsupportedNormalizer as exc:
        raise ModelLoadError(f"{path}: {exc}; a newer gguf-embed may read this file") from None
    return value


def read_info(path: Path, *, pooling_override: str | None = None) -> tuple[GGUFFile, ModelInfo]:
    gguf = read_gguf(path)
    return gguf, ModelInfo.from_file(gguf, pooling_override=pooling_override)

"""What a GGUF says about embedding or reranking with it (one ``ModelInfo``). Read from the file's
metadata alone: no llama.cpp, no weights. Where a model name's GGUF lives is ``sources.resolve_model``
(re-exported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .. import choices, keys
from ..errors import InvalidInputError, ModelLoadError
from ..registry import load_registry
from ..text import normalize, templates
from .archs import DENSE_TENSORS, known, missing_dense_note, unknown_note
from .archs import arch as arch_row
from .family import recognise
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
    family: str | None = None  # the models.toml family the file was recognised as
    eos: str | None = None  # the token every framed input must end with (last-token pooling reads it)
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # value -> where it came from
    heads: tuple[str, ...] = ()  # extra heads the file carries (bge-m3: sparse, colbert)
    warnings: tuple[str, ...] = ()  # one line each: what may make this file's vectors wrong (inspect, first load)

    @property
    def one_batch(self) -> bool:
        """Whether an input must stay whole in one llama.cpp batch (encoders: no KV cache between batches)."""
        return not self.causal or arch_row(self.arch).one_batch

    @property
    def file_type_name(self) -> str | None:
        """``general.file_type`` as llama.cpp names it (F16, Q8_0, Q4_K_M...)."""
        return file_type_name(self.file_type)

    @property
    def outputs(self) -> tuple[str, ...]:
        """What one pass can give: the pooled vector and token states always, head outputs when the file has them."""
        return tuple(o for o in choices.OUTPUTS if o not in choices.HEAD_OUTPUTS or o in self.heads)

    @property
    def dimension_range(self) -> tuple[int, int]:
        return (self.matryoshka_min or self.n_embd, self.n_embd)

    @classmethod
    def from_file(cls, gguf: GGUFFile, *, pooling_override: str | None = None, families=None,
                  prompts: Mapping[str, str | None] | None = None) -> "ModelInfo":
        """What ``gguf`` says, completed from its family (``families``: the registry's by default)
        and ``prompts`` given by the caller; ``sources`` says where each value came from."""
        meta, path = gguf.meta, gguf.path
        arch = str(meta.get(keys.ARCH, "?"))
        row = arch_row(arch)
        fam = recognise(gguf, (families if families is not None else load_registry().families).values())
        src: dict[str, str] = {}

        def num(key: str, default: int = 0) -> int:
            value = meta.get(keys.arch_key(arch, key), default)
            return int(value) if isinstance(value, (int, float)) else default

        def pick(key: str, ours, family_value, default):
            """The file's own value, else the family's, else ``default``; the source recorded under ``key``."""
            if ours is not None:
                src[key] = "file"
                return ours
            if fam is not None and family_value not in (None, {}, ""):
                src[key] = f"family {fam.name}"
                return family_value
            src[key] = "default"
            return default

        pooling, task = _pooling_and_task(meta, arch, row, pooling_override, fam, src)
        n_ctx_train = num("context_length")
        max_tokens = int(pick("max_tokens", meta.get(keys.MAX_TOKENS), fam and fam.max_tokens, n_ctx_train))
        mmin = pick("matryoshka_min", meta.get(keys.MATRYOSHKA_MIN), fam and fam.matryoshka_min, None)
        found = _prompts(meta)
        chosen = dict(pick("prompts", found or None, fam and dict(fam.prompts), {}))
        for name, text in (prompts or {}).items():
            if text is not None:
                chosen[name], src["prompts"] = text, "override"
        if fam is not None and fam.eos and task == "embed":
            src["eos"] = f"family {fam.name}"
        norm = pick("text_normalizer", meta.get(keys.TEXT_NORMALIZER), fam and fam.text_normalizer, "none")
        file_causal = meta.get(keys.arch_key(arch, "attention.causal"))
        causal = row.causal if row.causal_fixed or file_causal is None else bool(file_causal)
        return cls(
            path=path, name=str(meta.get(keys.REGISTRY_NAME) or path.stem), arch=arch,
            n_embd=num("embedding_length"), n_layer=num("block_count"), n_ctx_train=n_ctx_train, pooling=pooling,
            causal=causal,
            max_tokens=min(max_tokens, n_ctx_train) if n_ctx_train else max_tokens,
            matryoshka_min=int(mmin) if mmin else None, prompts=MappingProxyType(chosen),
            text_normalizer=_text_normalizer(path, str(norm)), task=str(task),
            rerank=_rerank_template(meta, fam, src), type1_offset=int(meta.get(keys.TYPE1_OFFSET, 0) or 0),
            file_type=meta.get(keys.FILE_TYPE), family=fam.name if fam else None,
            eos=fam.eos if fam and task == "embed" else None, sources=MappingProxyType(src),
            heads=_heads(meta), warnings=_warnings(gguf, arch, causal, pooling),
        )


def _pooling_and_task(meta, arch: str, row, override: str | None, fam, src: dict) -> tuple[str, str]:
    pooling = override or keys.POOLING_NAMES.get(meta.get(keys.arch_key(arch, "pooling_type")))
    src["pooling"] = "override" if override else "file" if pooling not in (None, "none") else "default"
    task = meta.get(keys.TASK) or ("rerank" if pooling == "rank" else fam.task if fam else "embed")
    src["task"] = "file" if meta.get(keys.TASK) or pooling == "rank" else f"family {fam.name}" if fam else "default"
    if pooling == "rank" or (task == "rerank" and pooling in (None, "none")):
        pooling = row.rank_token  # a rerank head reads the classification token
    if pooling in (None, "none"):
        pooling = row.default_pooling  # llama.cpp's converter writes no pooling for plain decoders
    return pooling, str(task)


def _warnings(gguf: GGUFFile, arch: str, causal: bool, pooling: str) -> tuple[str, ...]:
    """What the architecture table knows to be wrong with this file: an architecture it does not know,
    one gguf-embed cannot run, an EmbeddingGemma without its Dense layers."""
    if not known(arch):
        return (unknown_note(arch, causal, pooling),)
    row = arch_row(arch)
    if not row.runs:
        return (f"architecture {arch!r}: {row.note}",)
    if arch == "gemma-embedding" and not all(t in gguf.tensors for t in DENSE_TENSORS):
        return (missing_dense_note(gguf.path.name),)
    return ()


def _heads(meta: Mapping[str, Any]) -> tuple[str, ...]:
    listed = meta.get(keys.HEADS)
    return tuple(h for h in choices.HEAD_OUTPUTS if isinstance(listed, list) and h in listed)


def _prompts(meta: Mapping[str, Any]) -> dict[str, str]:
    return {k[len(keys.PROMPT):]: str(v) for k, v in meta.items() if k.startswith(keys.PROMPT)}


def _rerank_template(meta: Mapping[str, Any], fam, src: dict) -> RerankTemplate | None:
    """gguf-embed's own split template, else llama.cpp's ``tokenizer.chat_template.rerank``, split."""
    body = meta.get(keys.RERANK_BODY)
    if body is not None:
        src["rerank_template"] = "file"
        return RerankTemplate(str(meta.get(keys.RERANK_PREFIX, "")), str(body),
                              str(meta.get(keys.RERANK_SUFFIX, "")), meta.get(keys.RERANK_INSTRUCTION))
    text = meta.get(keys.LLAMA_RERANK_TEMPLATE)
    if not isinstance(text, str):
        return None
    try:
        prefix, body, suffix, instruction = templates.parse_rerank_template(text)
    except InvalidInputError as exc:
        raise ModelLoadError(f"{meta.get('general.name', 'the file')}: {exc.message}") from None
    src["rerank_template"] = f"file ({keys.LLAMA_RERANK_TEMPLATE})"
    return RerankTemplate(prefix, body, suffix, instruction or (fam.rerank_instruction if fam else None))


def _text_normalizer(path: Path, value: str) -> str:
    try:
        normalize.parse(value)
    except normalize.UnsupportedNormalizer as exc:
        raise ModelLoadError(f"{path}: {exc}; a newer gguf-embed may read this file") from None
    return value


def read_info(path: Path, *, pooling_override: str | None = None, families=None,
              prompts: Mapping[str, str | None] | None = None) -> tuple[GGUFFile, ModelInfo]:
    gguf = read_gguf(path)
    return gguf, ModelInfo.from_file(gguf, pooling_override=pooling_override, families=families, prompts=prompts)

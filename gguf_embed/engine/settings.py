"""One frozen object for every runtime option, from the command line, the server or Ray to the engine,
and the defaults the engine derives from a model when an option is left unset."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .. import choices
from ..errors import InvalidInputError

__all__ = ["RuntimeSettings", "DEFAULT_BATCH_TOKENS", "batch_reason", "DEFAULT_CAUSAL_CTX", "context_shape", "default_flash_attn",
           "default_kv_type", "fast_path_enabled", "FAST_PATH_ENV", "default_threads"]

DEFAULT_BATCH_TOKENS = 512
DEFAULT_CAUSAL_CTX = 8192
DEFAULT_MAX_SEQS = 64
FAST_PATH_ENV = "GGUF_EMBED_FAST_PATH"


@dataclass(frozen=True)
class RuntimeSettings:
    """How to run a model; ``None`` means "the engine's default for this model"."""

    n_gpu_layers: int | None = None
    n_ctx: int | None = None
    n_threads: int | None = None
    batch_tokens: int | None = None
    max_seqs: int = DEFAULT_MAX_SEQS
    flash_attn: str | None = None
    kv_type: str | None = None
    pooling: str | None = None  # override the file's pooling
    fast_path: bool | None = None  # None: on unless GGUF_EMBED_FAST_PATH=0
    prefix_cache: bool = True  # decode a batch's common prefixes once (last-token fast path only)
    vram: str | None = None  # a GPU budget ("3GB"): layers, batch and KV type chosen to fit it
    query_prompt: str | None = None  # replaces (or supplies) the model's query prompt
    document_prompt: str | None = None
    models_dir: Path | None = None
    verbose: bool = False

    def __post_init__(self):
        if self.pooling is not None and self.pooling not in choices.POOLINGS:
            raise InvalidInputError(f"pooling must be one of {', '.join(choices.POOLINGS)}")
        if self.flash_attn is not None and self.flash_attn not in choices.FLASH_ATTN_MODES:
            raise InvalidInputError(f"flash_attn must be one of {', '.join(choices.FLASH_ATTN_MODES)}")
        if self.kv_type is not None and self.kv_type not in choices.KV_TYPES:
            raise InvalidInputError(f"kv_type must be one of {', '.join(choices.KV_TYPES)}")

    @classmethod
    def of(cls, **kwargs) -> "RuntimeSettings":
        """From keyword arguments, ignoring those that are None (so a caller's unset option keeps the default)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown runtime settings: {', '.join(unknown)}")
        return cls(**{k: v for k, v in kwargs.items() if v is not None})

    def with_(self, **changes) -> "RuntimeSettings":
        return replace(self, **changes)


def context_shape(info, n_ctx: int | None, batch_tokens: int | None) -> tuple[int, int, int]:
    """(context size, tokens per llama.cpp batch, longest input) for a model and the user's wishes."""
    budget = int(batch_tokens or DEFAULT_BATCH_TOKENS)
    if not info.one_batch:
        ctx = max(int(n_ctx or min(info.max_tokens, DEFAULT_CAUSAL_CTX)), budget)
        return ctx, budget, min(info.max_tokens, ctx)
    # encoder models see a whole sequence in one batch: the budget must hold the longest
    budget = max(budget, info.max_tokens)
    return budget, budget, info.max_tokens


def pack_tokens(info, budget: int, batch_tokens: int | None, reserve_logits: bool) -> int:
    """Tokens packed into one llama.cpp batch. An encoder's batch holds its longest input (``budget``);
    where llama.cpp reserves n_vocab floats of logits per output of an embeddings context (a stock
    build), short inputs are packed only up to the asked or default batch, so that reservation is what
    the input needs (a longer input still gets a batch of its own), not 8192 tokens' worth (7.6 GiB
    for XLM-R's 250,002 pieces)."""
    if info.one_batch and reserve_logits:
        return min(budget, int(batch_tokens or DEFAULT_BATCH_TOKENS))
    return budget


def batch_reason(info, batch_tokens: int) -> str:
    """Why a model runs with ``batch_tokens`` tokens per llama.cpp batch (one clause, for plan)."""
    if not info.one_batch:
        return ("the default" if batch_tokens == DEFAULT_BATCH_TOKENS else "as asked") + \
            "; decoders split longer inputs over batches (ctx holds the whole input)"
    if batch_tokens == info.max_tokens and batch_tokens > DEFAULT_BATCH_TOKENS:
        return "the token limit: an encoder sees a whole input in one batch"
    if batch_tokens == DEFAULT_BATCH_TOKENS:
        return ("the default; bench/bench_batch.py on all-MiniLM-L6-v2 found no size consistently faster "
                "(256 to 1024 within the noise of a shared CPU)")
    return "as asked"


def default_flash_attn(info, n_gpu_layers: int) -> str:
    # On CPU, flash attention skips the masked blocks of packed sequences (about 3x
    # faster for short BERT inputs) but rounds queries to F16; on decoder models that
    # moves vectors by ~1e-5 between batch compositions, so there it stays off unless
    # asked for; rerank heads amplify that rounding to ~1e-3 in the scores, so it stays off
    # for rerankers too. On a GPU llama.cpp decides.
    return "auto" if n_gpu_layers != 0 else ("off" if info.causal or info.task == "rerank" else "on")


def default_kv_type(info) -> str:
    """The KV-cache type when none is given: a rerank head turns the F16 cache's rounding into
    ~1e-3 of score, so rerankers keep F32; embedding models F16."""
    return "f32" if info.task == "rerank" else "f16"


def fast_path_enabled(requested: bool | None) -> bool:
    """The caller's choice, else the environment (``GGUF_EMBED_FAST_PATH=0`` turns it off)."""
    if requested is not None:
        return bool(requested)
    return os.environ.get(FAST_PATH_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1

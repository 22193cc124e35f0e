"""GGUF in, float32 vectors out.

The request path is pre-process (prompt, tokenise, truncate), inference (sequences
sorted by length and packed into llama.cpp batches under a token budget, hidden states
read as numpy views, only the rows pooling needs kept) and post-process (pool,
Matryoshka cut, L2 normalise, restore input order). ``embed_batch`` is the core; everything else, the
CLI and the server included, builds on ``embed``/``embed_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import _llama, textnorm
from .errors import InputTooLongError, InvalidInputError
from .framing import common_prefix, fit_body
from .model_info import ModelInfo, resolve_model
from .pooling import POOLINGS, postprocess
from .registry import Registry
from .runner import BatchRunner

__all__ = ["Embedder", "EmbedResult", "TRUNCATE_POLICIES", "INPUT_TYPES"]

TRUNCATE_POLICIES = ("error", "end", "start")
INPUT_TYPES = ("query", "document")
DEFAULT_BATCH_TOKENS = 512
DEFAULT_CAUSAL_CTX = 8192
INSTRUCT_PREFIX = "Instruct: "


def context_shape(info: ModelInfo, n_ctx: int | None, batch_tokens: int | None) -> tuple[int, int, int]:
    """(context size, tokens per llama.cpp batch, longest input) for a model and the user's wishes."""
    budget = int(batch_tokens or DEFAULT_BATCH_TOKENS)
    if info.causal:
        ctx = max(int(n_ctx or min(info.max_tokens, DEFAULT_CAUSAL_CTX)), budget)
        return ctx, budget, min(info.max_tokens, ctx)
    # encoder models see a whole sequence in one batch: the budget must hold the longest
    budget = max(budget, info.max_tokens)
    return budget, budget, info.max_tokens


def default_flash_attn(info: ModelInfo, n_gpu_layers: int) -> str:
    # On CPU, flash attention skips the masked blocks of packed sequences (about 3x
    # faster for short BERT inputs) but rounds queries to F16; on decoder models that
    # moves vectors by ~1e-5 between batch compositions, so there it stays off unless
    # asked for; rerank heads amplify that rounding to ~1e-3 in the scores, so it stays off
    # for rerankers too. On a GPU llama.cpp decides.
    return "auto" if n_gpu_layers != 0 else ("off" if info.causal or info.task == "rerank" else "on")


def default_kv_type(info: ModelInfo) -> str:
    """The KV-cache type when none is given: a rerank head turns the F16 cache's rounding into
    ~1e-3 of score, so rerankers keep F32; embedding models F16."""
    return "f32" if info.task == "rerank" else "f16"


@dataclass(frozen=True)
class EmbedResult:
    embeddings: np.ndarray  # float32 (n, d), input order
    token_counts: np.ndarray  # int64 (n,), tokens embedded per input (after truncation)

    @property
    def total_tokens(self) -> int:
        return int(self.token_counts.sum())


class Embedder:
    """A GGUF embedding model on llama.cpp. Not re-entrant: calls are serialised."""

    def __init__(
        self,
        model: str | Path,
        *,
        n_gpu_layers: int | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        batch_tokens: int | None = None,
        max_seqs: int = 64,
        flash_attn: str | None = None,
        kv_type: str | None = None,
        pooling: str | None = None,
        fast_path: bool | None = None,
        registry: Registry | None = None,
        models_dir: Path | None = None,
        verbose: bool = False,
    ):
        if pooling is not None and pooling not in POOLINGS:
            raise InvalidInputError(f"pooling must be one of {', '.join(POOLINGS)}")
        _llama.set_verbose(verbose)
        path = resolve_model(model, registry=registry, models_dir=models_dir)
        if n_gpu_layers is None:
            n_gpu_layers = -1 if _llama.supports_gpu_offload() else 0
        self.model = _llama.Model(path, n_gpu_layers=n_gpu_layers)
        self.info = ModelInfo.from_meta(
            path, self.model.meta(), n_embd=self.model.n_embd, n_layer=self.model.n_layer,
            n_ctx_train=self.model.n_ctx_train, pooling_override=pooling,
        )
        info = self.info
        n_ctx, budget, self.max_tokens = context_shape(info, n_ctx, batch_tokens)
        self.batch_tokens = budget
        max_seqs = max(1, min(int(max_seqs), 256))
        if flash_attn is None:
            flash_attn = default_flash_attn(info, n_gpu_layers)
        if flash_attn not in _llama.FLASH_ATTN:
            raise InvalidInputError(f"flash_attn must be one of {', '.join(_llama.FLASH_ATTN)}")
        kv_type = kv_type or default_kv_type(info)
        if kv_type not in _llama.KV_TYPES:
            raise InvalidInputError(f"kv_type must be one of {', '.join(_llama.KV_TYPES)}")
        self.runner = BatchRunner(
            self.model, pooling=info.pooling, causal=info.causal, n_ctx=n_ctx, batch_tokens=budget,
            max_seqs=max_seqs, n_threads=n_threads or _llama.default_threads(), flash_attn=flash_attn,
            kv_type=kv_type, fast_path=fast_path,
        )
        self.max_seqs = max_seqs
        self._prefix, self._suffix = self._special_frame()

    # --- properties ----------------------------------------------------------------

    @property
    def dimensions(self) -> int:
        return self.info.n_embd

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def n_vocab(self) -> int:
        return self.model.n_vocab

    @property
    def ctx(self) -> _llama.Context:
        return self.runner.ctx

    @property
    def fast_path(self) -> bool:
        """True when only each sequence's last token is computed to the final norm (no LM head)."""
        return self.runner.fast_path

    def close(self) -> None:
        self.runner.close()
        self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- pre-processing ----------------------------------------------------------------

    def _special_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """The special tokens the tokenizer puts before and after any text (e.g. [CLS]/[SEP], <|endoftext|>)."""
        probe = "hello"
        plain = self.model.tokenize(probe, add_special=False)
        full = self.model.tokenize(probe, add_special=True)
        for start in range(len(full) - len(plain) + 1):
            if np.array_equal(full[start:start + len(plain)], plain):
                return full[:start].copy(), full[start + len(plain):].copy()
        return np.zeros(0, np.int32), np.zeros(0, np.int32)  # pragma: no cover

    def prompt_for(self, input_type: str | None, instruction: str | None) -> str:
        if input_type is not None and input_type not in INPUT_TYPES:
            raise InvalidInputError(f"input_type must be one of {', '.join(INPUT_TYPES)}", param="input_type")
        if instruction is not None:
            if input_type == "document":
                raise InvalidInputError("an instruction applies to queries, not documents", param="instruction")
            query = self.info.prompts.get("query", "")
            if not query.startswith(INSTRUCT_PREFIX):
                raise InvalidInputError(
                    f"model {self.name} takes no task instruction (its query prompt is {query!r})", param="instruction"
                )
            return f"{INSTRUCT_PREFIX}{instruction}\nQuery:"
        return self.info.prompts.get(input_type or "document", "")

    def _limit_error(self, index: int, n: int) -> InputTooLongError:
        return InputTooLongError(
            f"input {index} has {n} tokens, more than the model's limit of {self.max_tokens}; "
            "shorten it or set truncate to 'end' or 'start'",
            param="input",
        )

    def _truncate(self, tokens: np.ndarray, index: int, truncate: str, keep_head: int) -> np.ndarray:
        if len(tokens) > self.max_tokens and truncate == "error":
            raise self._limit_error(index, len(tokens))
        return fit_body(tokens, len(self._prefix), len(self._suffix), self.max_tokens, truncate, keep_head)

    def tokenize(self, texts: Sequence[str], *, input_type: str | None = None, instruction: str | None = None,
                 truncate: str = "error") -> list[np.ndarray]:
        if truncate not in TRUNCATE_POLICIES:
            raise InvalidInputError(f"truncate must be one of {', '.join(TRUNCATE_POLICIES)}", param="truncate")
        prompt = self.prompt_for(input_type, instruction)
        norm = self.info.text_normalizer
        prompt_ids = self.model.tokenize(textnorm.apply(norm, prompt), add_special=False) if prompt else np.zeros(0, np.int32)
        out = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"input {i} is not a string", param="input")
            toks = self.model.tokenize(textnorm.apply(norm, prompt + text), add_special=True)
            keep = 0
            if len(prompt_ids) and len(toks) > self.max_tokens:
                # the prompt's tokens, up to where the text's first word merges into them
                keep = common_prefix(toks[len(self._prefix):len(self._prefix) + len(prompt_ids)], prompt_ids)
            out.append(self._truncate(toks, i, truncate, keep))
        return out

    def frame_tokens(self, ids: Sequence[int], index: int = 0, truncate: str = "error") -> np.ndarray:
        """Token ids from a client: checked against the vocabulary, special tokens added unless present."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim != 1 or len(arr) == 0:
            raise InvalidInputError(f"input {index} must be a non-empty list of token ids", param="input")
        if arr.min() < 0 or arr.max() >= self.n_vocab:
            raise InvalidInputError(f"input {index} has token ids outside 0..{self.n_vocab - 1}", param="input")
        arr = arr.astype(np.int32)
        pre, suf = self._prefix, self._suffix
        if len(pre) and not np.array_equal(arr[:len(pre)], pre):
            arr = np.concatenate([pre, arr])
        if len(suf) and not np.array_equal(arr[len(arr) - len(suf):], suf):
            arr = np.concatenate([arr, suf])
        return self._truncate(arr, index, truncate, 0)

    # --- inference ------------------------------------------------------------------

    def encode_tokens(self, seqs: list[np.ndarray], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Pooled, unnormalised vectors (n, n_embd) for framed token sequences, in input order."""
        return self.runner.encode(seqs, self.info.n_embd, progress)

    # --- public API ---------------------------------------------------------------------

    def check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is None:
            return
        lo, hi = self.info.dimension_range
        if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)) or not lo <= dimensions <= hi:
            if lo == hi:
                msg = f"model {self.name} is not Matryoshka-trained; its only dimension is {hi}"
            else:
                msg = f"dimensions must be between {lo} and {hi} for model {self.name}"
            raise InvalidInputError(f"{msg} (got {dimensions!r})", param="dimensions")

    def embed(
        self,
        texts: Sequence[str],
        *,
        input_type: str | None = None,
        instruction: str | None = None,
        dimensions: int | None = None,
        normalize: bool = True,
        truncate: str = "error",
        progress: Callable[[int], None] | None = None,
    ) -> EmbedResult:
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings, not a single string", param="input")
        self.check_dimensions(dimensions)
        seqs = self.tokenize(texts, input_type=input_type, instruction=instruction, truncate=truncate)
        return self._finish(seqs, dimensions, normalize, progress)

    def embed_tokens(self, token_lists: Sequence[Sequence[int]], *, dimensions: int | None = None,
                     normalize: bool = True, truncate: str = "error") -> EmbedResult:
        self.check_dimensions(dimensions)
        if truncate not in TRUNCATE_POLICIES:
            raise InvalidInputError(f"truncate must be one of {', '.join(TRUNCATE_POLICIES)}", param="truncate")
        seqs = [self.frame_tokens(ids, i, truncate) for i, ids in enumerate(token_lists)]
        return self._finish(seqs, dimensions, normalize, None)

    def _finish(self, seqs, dimensions, normalize, progress) -> EmbedResult:
        raw = self.encode_tokens(seqs, progress)
        counts = np.array([len(s) for s in seqs], dtype=np.int64)
        return EmbedResult(postprocess(raw, dimensions, normalize), counts)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Documents in, normalised float32 (n, d) out: the core every interface builds on."""
        return self.embed(texts).embeddings

    def embed_one(self, text: str, **kwargs) -> np.ndarray:
        return self.embed([text], **kwargs).embeddings[0]

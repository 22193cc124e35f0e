"""A ``Session``: one GGUF loaded in llama.cpp, a context sized for it, and the batch runner.

``Session(model, settings)`` resolves the model (a path or a ``models.toml`` name), reads what
the file says (``ModelInfo``), applies a ``--vram`` budget, loads the weights, and creates the
context with the defaults the model needs. Its ``rows(seqs)`` turns framed token sequences
into one raw pooled row each; ``Embedder`` and ``Reranker`` are the thin layers that prepare
the sequences and finish the rows.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Callable

import numpy as np

from .. import choices
from ..errors import InvalidInputError, InvalidTextError, ModelLoadError, text_problem
from ..model.archs import arch as arch_row
from ..model.info import read_info, resolve_model
from ..notes import warn_once
from ..registry import Registry
from ..text.frame import Frame, special_frame
from ..text.wordpiece import WordPiece
from . import llama
from .planning import fit_budget, parse_size, read_shape
from .runner import BatchRunner
from .settings import (
    RuntimeSettings,
    context_shape,
    default_flash_attn,
    default_kv_type,
    default_threads,
    pack_tokens,
)

__all__ = ["Session", "open_session", "describe_plan", "measure_buffers", "buffer_sizes", "resident_bytes"]

MAX_SEQS_CAP = 256


def _check_arch(info) -> None:
    """Refuse an architecture the engine cannot run; say once what else may make the vectors wrong."""
    row = arch_row(info.arch)
    if not row.runs:
        raise ModelLoadError(f"{info.path}: architecture {info.arch!r} is not supported: {row.note}")
    for note in info.warnings:
        warn_once(note)


class Session:
    """A GGUF on llama.cpp. ``rows`` is serialised: one caller at a time."""

    def __init__(self, model: str | Path, settings: RuntimeSettings | None = None, *,
                 registry: Registry | None = None):
        settings = settings or RuntimeSettings()
        llama.set_verbose(settings.verbose)
        path = resolve_model(model, registry=registry, models_dir=settings.models_dir)
        try:
            self.gguf, self.info = read_info(
                path, pooling_override=settings.pooling, families=registry.families if registry is not None else None,
                prompts={"query": settings.query_prompt, "document": settings.document_prompt})
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:  # metadata of the wrong kind
            raise ModelLoadError(f"{path} has metadata gguf-embed cannot read ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}); is it a corrupt GGUF?") from None
        _check_arch(self.info)
        self.plan = None
        if settings.vram:
            self.plan = fit_budget(read_shape(self.gguf), parse_size(settings.vram), n_ctx=settings.n_ctx,
                                   batch_tokens=settings.batch_tokens)
            settings = settings.with_(**self.plan.settings())
        self.settings = settings
        n_gpu_layers = settings.n_gpu_layers
        if n_gpu_layers is None:
            n_gpu_layers = -1 if llama.supports_gpu_offload() else 0
        info = self.info
        self.model = llama.Model(path, n_gpu_layers=n_gpu_layers)
        n_ctx, budget, self.max_tokens = context_shape(info, settings.n_ctx, settings.batch_tokens)
        self.max_seqs = max(1, min(int(settings.max_seqs), MAX_SEQS_CAP))
        params = llama.ContextParams(
            n_ctx=n_ctx, n_batch=budget, n_ubatch=budget, n_seq_max=self.max_seqs,
            n_threads=settings.n_threads or default_threads(),
            flash_attn=settings.flash_attn or default_flash_attn(info, n_gpu_layers),
            kv_type=settings.kv_type or default_kv_type(info),
        )
        try:
            pack = pack_tokens(info, budget, settings.batch_tokens, llama.embeddings_reserve_logits())
            self.runner = BatchRunner(self.model, params, pooling=info.pooling, causal=info.causal,
                                      fast_path=settings.fast_path, prefix_cache=settings.prefix_cache,
                                      pack_tokens=pack)
        except BaseException:
            self.model.close()
            raise
        self.batch_tokens = budget
        self._wordpiece = None
        self.frame: Frame = special_frame(self.tokenize)
        self.eos_id, self.eos_appended = self._eos()
        self._wordpiece = self._hf_wordpiece()

    def _hf_wordpiece(self):
        """Uncased BERT vocabularies: Hugging Face's WordPiece for the texts where llama.cpp's WPM tokenizer
        differs (it drops the spacing vowel signs of Hindi or Bengali, for one); llama.cpp for the rest."""
        if self.gguf.meta.get("tokenizer.ggml.model") != "bert" or "lower" not in self.info.text_normalizer:
            return None

        tokens = self.gguf.array("tokenizer.ggml.tokens") or []
        unk = self.gguf.meta.get("tokenizer.ggml.unknown_token_id")
        return WordPiece(tokens, unk=unk if isinstance(unk, int) else "[UNK]")

    def _eos(self) -> tuple[int | None, bool]:
        """The token every input must end with (Qwen3-Embedding: <|endoftext|>, never <|im_end|>), and
        whether gguf-embed appends it because the file's tokenizer does not (add_eos_token false or missing,
        or another EOS)."""
        if not self.info.eos:
            return None, False
        ids = self.tokenize(self.info.eos, add_special=False, parse_special=True)
        if len(ids) != 1:
            raise ModelLoadError(f"{self.info.path}: {self.info.eos!r} is not one token of this vocabulary")
        if np.array_equal(self.frame.suffix, ids):
            return int(ids[0]), False
        self.frame = Frame(self.frame.prefix, ids.astype(np.int32))
        return int(ids[0]), True

    def frame_text(self, text: str) -> np.ndarray:
        """A text's tokens inside the model's frame (special tokens before and after)."""
        if not self.eos_appended:
            return self.tokenize(text, add_special=True)
        body = self.tokenize(text, add_special=False)
        return np.concatenate([self.frame.prefix, body, self.frame.suffix]).astype(np.int32)

    # --- what the model is ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def n_embd(self) -> int:
        return self.info.n_embd

    @property
    def n_vocab(self) -> int:
        return self.model.n_vocab

    @property
    def ctx(self) -> llama.Context:
        return self.runner.ctx

    @property
    def fast_path(self) -> bool:
        """True when only each sequence's last token is computed to the final norm (no LM head)."""
        return self.runner.fast_path

    # --- running it -----------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = False) -> np.ndarray:
        """Token ids of (already normalised) text, with the frame's special tokens if ``add_special``."""
        wp = self._wordpiece
        try:
            if wp is not None and wp.needed(text):
                body = np.asarray(wp.encode(text), dtype=np.int32)
                frame = self.frame
                return np.concatenate([frame.prefix, body, frame.suffix]).astype(np.int32) if add_special else body
            return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)
        except UnicodeEncodeError:  # the adapters name the input; this is the last line for direct callers
            raise InvalidTextError(f"a text {text_problem(text)}") from None

    def rows(self, seqs: list[np.ndarray], progress: Callable[[int], None] | None = None,
             alone=None) -> np.ndarray:
        """Pooled, unnormalised rows (n, n_embd) for framed token sequences, in input order; ``alone``
        (a bool, or one per sequence): batch-invariant rows, each sequence in a batch of its own."""
        return self.runner.run(seqs, self.info.n_embd, progress, alone)

    @functools.cached_property
    def max_piece_bytes(self) -> int:
        """The longest piece of the vocabulary, in bytes (read on first use; the WordPiece route
        shares the file's vocabulary)."""
        return self.model.max_piece_bytes()

    def token_rows(self, seqs: list[np.ndarray], progress: Callable[[int], None] | None = None,
                   alone=None) -> list[np.ndarray]:
        """Every token's unnormalised hidden state, (len_i, n_embd) per framed sequence, in input order."""
        return self.runner.run_tokens(seqs, progress, alone)

    def close(self) -> None:
        self.runner.close()
        self.model.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_session(model, session: Session | None, settings: RuntimeSettings | None, registry,
                 overrides: dict) -> Session:
    """The session an Embedder or Reranker runs on: the one given, or a new one from ``settings``
    with ``overrides`` (RuntimeSettings fields as keyword arguments: ``n_gpu_layers=``...) on top."""
    if session is not None:
        return session
    if model is None:
        raise InvalidInputError("give a model (a .gguf path or a models.toml name)", param="model")
    settings = settings or RuntimeSettings()
    prompts = overrides.pop("prompts", None) or {}  # Embedder(path, prompts={"query": ..., "document": ...})
    unknown = sorted(set(prompts) - set(choices.INPUT_TYPES))
    if unknown:
        raise InvalidInputError(f"prompts take 'query' and 'document', not {', '.join(unknown)}", param="prompts")
    overrides = {**overrides, "query_prompt": prompts.get("query", overrides.get("query_prompt")),
                 "document_prompt": prompts.get("document", overrides.get("document_prompt"))}
    given = {k: v for k, v in overrides.items() if v is not None}
    return Session(model, settings.with_(**given) if given else settings, registry=registry)


def describe_plan(session: Session) -> str | None:
    """One line on what a ``--vram`` budget chose, or None without one."""
    p = session.plan
    if p is None:
        return None
    return (f"--vram {session.settings.vram}: {p.n_gpu_layers} layers on the GPU, batch {p.batch_tokens}, "
            f"KV {p.kv_type}, flash attention {p.flash_attn}, {p.device_total('GPU') / 2**30:.2f} GiB planned")


def measure_buffers(path, settings: RuntimeSettings) -> dict:
    """Create a real context and embed one full batch; return llama.cpp's reported buffers
    (bytes, keyed "kind:buffer") and the process's resident-memory growth over it."""
    before = resident_bytes()
    with llama.capture_log() as lines:
        session = Session(path, settings)
    try:
        # one batch of exactly batch_tokens tokens: every output row and the whole compute graph in use
        n_seq = min(8, session.max_seqs)
        per_seq = session.batch_tokens // n_seq
        filler = int(session.tokenize("hello", add_special=False)[0])
        frame = session.frame
        body = max(1, per_seq - len(frame.prefix) - len(frame.suffix))  # less the special tokens added
        seq = frame.fit(frame.wrap([filler] * body, session.n_vocab, 0), session.max_tokens, "end", 0)
        session.rows([seq] * n_seq)
        grown = resident_bytes() - before
        n_ctx = session.ctx.n_ctx
    finally:
        session.close()
    return {"reported": buffer_sizes(lines), "rss_growth": grown, "batch_tokens": session.batch_tokens,
            "n_ctx": n_ctx}


# --- llama.cpp's own account of its buffers ------------------------------------------

_BUFFER_LINE = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")


def buffer_sizes(lines: list[str]) -> dict[str, int]:
    """llama.cpp's report of the buffers it allocated ("CPU_Mapped model buffer size = 603.87 MiB",
    "CPU KV buffer size", "CPU compute buffer size", "CPU output buffer size") from captured log
    lines, as bytes keyed "kind:buffer" (kind: model, kv, compute, output)."""
    out: dict[str, int] = {}
    for buf, kind, mib in _BUFFER_LINE.findall("".join(lines)):
        key = f"{kind.lower()}:{buf}"
        out[key] = out.get(key, 0) + int(float(mib) * 2**20)
    return out


def device_buffers(reported: dict[str, int]) -> dict[str, int]:
    """llama.cpp's buffers (``buffer_sizes``) summed by kind and device, keyed "kind:CPU" for host
    memory (CPU, CPU_Mapped, CPU_REPACK, and the GPU backends' pinned Vulkan_Host, CUDA_Host...) and
    "kind:GPU" for a device's own (Vulkan0, CUDA0, Metal...), as ``MemoryPlan.buffers_at_start``."""
    out: dict[str, int] = {}
    for key, size in reported.items():
        kind, buf = key.split(":", 1)
        device = "CPU" if buf.startswith("CPU") or buf.endswith("_Host") else "GPU"
        out[f"{kind}:{device}"] = out.get(f"{kind}:{device}", 0) + size
    return out


def resident_bytes() -> int:
    """This process's resident memory (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            return next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:")), 0)
    except OSError:  # pragma: no cover
        return 0

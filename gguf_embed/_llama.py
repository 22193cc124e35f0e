"""The one place that talks to llama.cpp (through llama-cpp-python's low-level API).

Everything above this module works with numpy arrays and plain Python values.
llama.cpp's log output is captured here: dropped unless verbose, and its last error
lines are kept so that a failed load can say why.
"""

from __future__ import annotations

import collections
import ctypes
import os
import sys
import threading
from pathlib import Path

import llama_cpp as ll
import numpy as np

from .errors import ConversionError, ModelLoadError

_state = {"verbose": False}
_recent_errors: collections.deque[str] = collections.deque(maxlen=8)
_init_lock = threading.Lock()
_initialised = False


@ll.llama_log_callback
def _log_callback(level: int, text: bytes, _user_data) -> None:  # pragma: no cover - called from C
    msg = text.decode("utf-8", errors="replace")
    if level == 3:  # GGML_LOG_LEVEL_ERROR
        _recent_errors.append(msg.strip())
    for sink in _capture:
        sink.append(msg)
    if _state["verbose"]:
        sys.stderr.write(msg)


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = bool(verbose)


def init() -> None:
    global _initialised
    with _init_lock:
        if not _initialised:
            ll.llama_log_set(_log_callback, ctypes.c_void_p(0))
            ll.llama_backend_init()
            _initialised = True


def last_error() -> str:
    return _recent_errors[-1] if _recent_errors else ""


def supports_gpu_offload() -> bool:
    init()
    return bool(ll.llama_supports_gpu_offload())


# --- quantisation -------------------------------------------------------------------


def quantize_file(src: Path, dst: Path, quant: str, threads: int) -> None:
    init()
    ftype = getattr(ll, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise ConversionError(f"llama.cpp has no quantisation type {quant}")
    params = ll.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    _recent_errors.clear()
    rc = ll.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise ConversionError(f"llama.cpp could not quantise to {quant}: {last_error() or f'error {rc}'}")


# --- model and context --------------------------------------------------------------

FLASH_ATTN = {"auto": ll.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": ll.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": ll.LLAMA_FLASH_ATTN_TYPE_DISABLED}
KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2, "bf16": 30}


class Model:
    """A loaded GGUF: weights, vocabulary and metadata."""

    def __init__(self, path: Path, *, n_gpu_layers: int = 0, vocab_only: bool = False):
        init()
        params = ll.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.vocab_only = vocab_only
        _recent_errors.clear()
        self.ptr = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self.ptr:
            why = last_error() or "llama.cpp could not load it"
            raise ModelLoadError(f"cannot load {path}: {why}")
        self.vocab = ll.llama_model_get_vocab(self.ptr)
        self.n_embd = ll.llama_model_n_embd(self.ptr)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.ptr)
        self.n_layer = ll.llama_model_n_layer(self.ptr)
        self.has_encoder = bool(ll.llama_model_has_encoder(self.ptr))
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)

    def meta(self) -> dict[str, str]:
        out = {}
        buf = ctypes.create_string_buffer(1 << 16)
        for i in range(ll.llama_model_meta_count(self.ptr)):
            n = ll.llama_model_meta_key_by_index(self.ptr, i, buf, len(buf))
            key = buf.value.decode("utf-8", "replace") if n >= 0 else ""
            n = ll.llama_model_meta_val_str_by_index(self.ptr, i, buf, len(buf))
            if key and n >= 0:
                out[key] = buf.value.decode("utf-8", "replace")
        return out

    def cls_labels(self) -> list[str]:
        """A classifier's output labels (a reranker's: ["yes", "no"] for Qwen3)."""
        out = []
        for i in range(int(ll.llama_model_n_cls_out(self.ptr))):
            label = ll.llama_model_cls_label(self.ptr, i)
            out.append(label.decode("utf-8", "replace") if label else "")
        return out

    def size_bytes(self) -> int:
        return int(ll.llama_model_size(self.ptr))

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = False) -> np.ndarray:
        """Token ids; ``parse_special`` reads special-token text (e.g. ``<|im_end|>``) as those tokens."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        return np.frombuffer(buf, dtype=np.int32, count=n).copy()

    def close(self) -> None:
        if getattr(self, "ptr", None):
            ll.llama_model_free(self.ptr)
            self.ptr = None

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass


class Context:
    """A llama.cpp context set up for embeddings, with token-level outputs (no pooling)."""

    def __init__(self, model: Model, *, n_ctx: int, n_batch: int, n_ubatch: int, n_seq_max: int,
                 n_threads: int, flash_attn: str = "auto", kv_type: str = "f16"):
        p = ll.llama_context_default_params()
        p.n_ctx = n_ctx
        p.n_batch = n_batch
        p.n_ubatch = n_ubatch
        p.n_seq_max = n_seq_max
        p.n_threads = n_threads
        p.n_threads_batch = n_threads
        p.embeddings = True
        p.pooling_type = ll.LLAMA_POOLING_TYPE_NONE
        p.flash_attn_type = FLASH_ATTN[flash_attn]
        p.type_k = p.type_v = KV_TYPES[kv_type]
        p.kv_unified = True  # sequences of any length share one cache
        p.no_perf = True
        _recent_errors.clear()
        self.ptr = ll.llama_init_from_model(model.ptr, p)
        if not self.ptr:
            raise ModelLoadError(f"cannot create a llama.cpp context: {last_error() or 'out of memory?'}")
        self.model = model
        self.n_ctx = ll.llama_n_ctx(self.ptr)
        self.n_batch = ll.llama_n_batch(self.ptr)
        self.n_ubatch = ll.llama_n_ubatch(self.ptr)
        self.n_seq_max = n_seq_max
        self.batch = ll.llama_batch_init(self.n_batch, 0, n_seq_max)
        # numpy views on the batch's C arrays: filled without Python-level loops
        self._tok = np.ctypeslib.as_array(self.batch.token, shape=(self.n_batch,))
        self._pos = np.ctypeslib.as_array(self.batch.pos, shape=(self.n_batch,))
        self._nseq = np.ctypeslib.as_array(self.batch.n_seq_id, shape=(self.n_batch,))
        self._out = np.ctypeslib.as_array(self.batch.logits, shape=(self.n_batch,))
        self._seq_ptrs = [self.batch.seq_id[i] for i in range(self.n_batch)]
        self._nseq[:] = 1
        self._mem = ll.llama_get_memory(self.ptr)

    def clear(self) -> None:
        if self._mem:
            ll.llama_memory_clear(self._mem, True)

    def run(self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """One llama_decode over ``len(tokens)`` tokens.

        Returns every token's hidden state, (n, n_embd) float32, as a view on llama.cpp's
        output buffer: valid until the next call. (With embeddings on, llama.cpp outputs
        every token whatever the batch asks, so all are marked.)
        """
        n = len(tokens)
        self._tok[:n] = tokens
        self._pos[:n] = pos
        self._out[:n] = 1
        for i in range(n):
            self._seq_ptrs[i][0] = int(seq[i])
        self.batch.n_tokens = n
        rc = ll.llama_decode(self.ptr, self.batch)
        if rc != 0:
            raise ModelLoadError(f"llama_decode failed ({rc}): {last_error() or 'out of memory or context full'}")
        ptr = ll.llama_get_embeddings(self.ptr)
        return np.ctypeslib.as_array(ptr, shape=(n, self.model.n_embd))

    def state_size(self) -> int:
        return int(ll.llama_state_get_size(self.ptr))

    def close(self) -> None:
        if getattr(self, "ptr", None):
            ll.llama_batch_free(self.batch)
            ll.llama_free(self.ptr)
            self.ptr = None

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def rank_scores(model: Model, seqs: list[np.ndarray], *, n_threads: int | None = None, kv_type: str = "f32") -> np.ndarray:
    """llama.cpp's own RANK pooling (the head as llama-server --rerank runs it), one sequence at a time.

    Returns (n, n_cls_out) float32: for a Qwen3 reranker the softmax of the yes/no logits, for a
    cross-encoder the classifier's logits. A reference for checking gguf-embed's numpy heads.
    """
    n_max = max(len(s) for s in seqs)
    p = ll.llama_context_default_params()
    p.n_ctx = p.n_batch = p.n_ubatch = max(n_max, 16)
    p.n_seq_max = 1
    p.n_threads = p.n_threads_batch = n_threads or default_threads()
    p.embeddings = True
    p.pooling_type = ll.LLAMA_POOLING_TYPE_RANK
    p.flash_attn_type = FLASH_ATTN["off"]
    p.type_k = p.type_v = KV_TYPES[kv_type]
    ctx = ll.llama_init_from_model(model.ptr, p)
    if not ctx:
        raise ModelLoadError(f"cannot create a llama.cpp RANK context: {last_error() or 'out of memory?'}")
    n_out = max(int(ll.llama_model_n_cls_out(model.ptr)), 1)
    batch = ll.llama_batch_init(p.n_batch, 0, 1)
    out = np.empty((len(seqs), n_out), dtype=np.float32)
    try:
        for i, toks in enumerate(seqs):
            ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
            for j, t in enumerate(toks):
                batch.token[j], batch.pos[j], batch.n_seq_id[j] = int(t), j, 1
                batch.seq_id[j][0], batch.logits[j] = 0, 1
            batch.n_tokens = len(toks)
            if ll.llama_decode(ctx, batch) != 0:
                raise ModelLoadError(f"llama_decode failed: {last_error()}")
            ptr = ll.llama_get_embeddings_seq(ctx, 0)
            out[i] = np.ctypeslib.as_array(ptr, shape=(n_out,))
    finally:
        ll.llama_batch_free(batch)
        ll.llama_free(ctx)
    return out


# --- llama.cpp's own account of its buffers ------------------------------------------

_capture: list[list[str]] = []


class capture_log:
    """Collect llama.cpp's log lines (all levels) while the block runs."""

    def __enter__(self) -> list[str]:
        self.lines: list[str] = []
        _capture.append(self.lines)
        return self.lines

    def __exit__(self, *exc) -> None:
        _capture.remove(self.lines)

"""The one place that talks to llama.cpp (through llama-cpp-python's low-level API); everything above
works with numpy arrays. llama.cpp's log is captured here: dropped unless verbose, its last error
lines kept so that a failed load can say why.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as ll
import numpy as np

from ..errors import FastPathError, ModelLoadError
from .ggml import CAPTURE_NODE, RowCapture
from .settings import default_threads

_state = {"verbose": False}
_recent_errors: collections.deque[str] = collections.deque(maxlen=8)
_init_lock = threading.Lock()
_initialised = False


@ll.llama_log_callback
def _log_callback(level: int, text: bytes, _user_data) -> None:  # pragma: no cover - called from C
    msg = text.decode("utf-8", errors="replace")
    if level == 4:  # GGML_LOG_LEVEL_ERROR (3 is WARN)
        _recent_errors.append(msg.strip())
    for sink in _capture:
        sink.append(msg)
    if _state["verbose"]:
        sys.stderr.write(msg)


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = bool(verbose)


def is_verbose() -> bool:
    return _state["verbose"]


def init() -> None:
    """Initialise llama.cpp once; route its log here every time (other code may have replaced it)."""
    global _initialised
    with _init_lock:
        ll.llama_log_set(_log_callback, ctypes.c_void_p(0))
        if not _initialised:
            ll.llama_backend_init()
            _initialised = True


def reset_errors() -> None:
    _recent_errors.clear()


def last_error() -> str:  # llama.cpp's first error since the last clear (the cause), less its "function: "
    first = _recent_errors[0] if _recent_errors else ""
    return first.split(": ", 1)[-1] if first.partition(": ")[0].isidentifier() else first


def supports_gpu_offload() -> bool:
    init()
    return bool(ll.llama_supports_gpu_offload())


# the debug line patches/llama.cpp/no-logits-for-embeddings-contexts.patch adds: its text marks the build
_NO_LOGITS_MARK = b"embeddings context: no logits buffer"


@functools.cache
def embeddings_reserve_logits() -> bool:
    """Whether this libllama reserves n_vocab floats of logits for every output of an embeddings context,
    which nothing reads (a stock llama.cpp does; the build ``make install`` patches does not)."""
    from llama_cpp import llama_cpp as bindings  # where llama-cpp-python found libllama (LLAMA_CPP_LIB_PATH)

    try:
        return _NO_LOGITS_MARK not in Path(bindings._lib._name).read_bytes()
    except (OSError, AttributeError, TypeError):  # not a file we can read: assume the stock behaviour
        return True


def system_info() -> str:
    """llama.cpp's account of its backends and the CPU features it was built with and uses."""
    init()
    return (ll.llama_print_system_info() or b"").decode("utf-8", "replace")


# --- model and context --------------------------------------------------------------


class _Owned:
    """A llama.cpp object freed by its ``close()``, or when garbage-collected."""

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

# choices.FLASH_ATTN_MODES and choices.KV_TYPES as llama.cpp's enums (ggml types for the KV cache)
FLASH_ATTN = {"auto": ll.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": ll.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": ll.LLAMA_FLASH_ATTN_TYPE_DISABLED}
KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "q4_0": 2, "bf16": 30}


class Model(_Owned):
    """A loaded GGUF: weights, vocabulary and metadata."""

    def __init__(self, path: Path, *, n_gpu_layers: int = 0, vocab_only: bool = False):
        init()
        params = ll.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        params.vocab_only = vocab_only
        self.n_gpu_layers = n_gpu_layers
        _recent_errors.clear()
        self.ptr = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self.ptr:
            why = last_error() or "llama.cpp could not load it"
            raise ModelLoadError(f"cannot load {path}: {why}")
        self.vocab = ll.llama_model_get_vocab(self.ptr)
        self.n_embd = ll.llama_model_n_embd(self.ptr)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.ptr)
        self.n_layer = ll.llama_model_n_layer(self.ptr)
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

    def detokenize(self, ids, *, special: bool = False) -> str:
        """The text of token ids; ``special``: with the special tokens' text, else without them."""
        toks = (ll.llama_token * len(ids))(*map(int, ids))
        need = -ll.llama_detokenize(self.vocab, toks, len(ids), None, 0, not special, special)  # asked with no room
        buf = ctypes.create_string_buffer(max(need, 1))
        n = ll.llama_detokenize(self.vocab, toks, len(ids), buf, len(buf), not special, special)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    def max_piece_bytes(self) -> int:
        """The longest vocabulary piece, in UTF-8 bytes: no token covers more characters of a text."""
        get = ll.llama_vocab_get_text
        return max((len(get(self.vocab, i) or b"") for i in range(self.n_vocab)), default=1)

    def close(self) -> None:
        if getattr(self, "ptr", None):
            ll.llama_model_free(self.ptr)
            self.ptr = None


@dataclass(frozen=True)
class ContextParams:
    """The llama.cpp context a Session runs in."""

    n_ctx: int
    n_batch: int
    n_ubatch: int
    n_seq_max: int
    n_threads: int
    flash_attn: str = "auto"
    kv_type: str = "f16"


class Context(_Owned):
    """A llama.cpp context that returns hidden states as numpy rows.

    ``last_only=False``: embeddings on, every token an output, ``run`` returns every row.
    ``last_only=True`` (decoder models): embeddings off, only the tokens marked in ``out``
    are outputs, and an eval callback copies the final-norm rows and stops the graph
    before the LM head; ``run`` returns just those rows. ``n_seq_max`` bounds the outputs
    of one batch (one per sequence).
    """

    def __init__(self, model: Model, params: ContextParams, *, last_only: bool = False, callback=None):
        n_seq_max = params.n_seq_max
        p = ll.llama_context_default_params()
        for name in ("n_ctx", "n_batch", "n_ubatch", "n_seq_max", "n_threads"):
            setattr(p, name, getattr(params, name))
        p.n_threads_batch = params.n_threads
        p.embeddings = not last_only
        p.pooling_type = ll.LLAMA_POOLING_TYPE_NONE
        p.flash_attn_type = FLASH_ATTN[params.flash_attn]
        p.type_k = p.type_v = KV_TYPES[params.kv_type]
        p.kv_unified = True  # sequences of any length share one cache; ubatches keep batch order
        p.op_offload = model.n_gpu_layers != 0  # 0 layers: all on the CPU, no batch products sent to a GPU
        p.no_perf = True
        self.capture = None
        if last_only:
            p.n_outputs_max = n_seq_max  # outputs per ubatch: one per sequence at most
            self.capture = RowCapture(CAPTURE_NODE)
            p.cb_eval = self.capture.callback
            p.cb_eval_user_data = None
        elif callback is not None:  # an observer of every node (see ggml.ImportanceCapture)
            self.capture = callback
            p.cb_eval = callback.callback
            p.cb_eval_user_data = None
        _recent_errors.clear()
        self.ptr = ll.llama_init_from_model(model.ptr, p)
        if not self.ptr:
            raise ModelLoadError(f"cannot create a llama.cpp context: {last_error() or 'out of memory?'}")
        self.model = model
        self.last_only = last_only
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

    def forget(self, seq: int) -> None:
        """Free sequence ``seq``'s cells (those no other sequence also owns)."""
        ll.llama_memory_seq_rm(self._mem, seq, -1, -1)

    def share(self, src: int, dst: int, n: int) -> None:
        """Sequence ``dst`` also owns ``src``'s cells at positions 0..n-1 (one stream: no copying)."""
        ll.llama_memory_seq_cp(self._mem, src, dst, 0, n)

    def _decode(self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray, out: np.ndarray) -> None:
        n = len(tokens)
        self._tok[:n] = tokens
        self._pos[:n] = pos
        self._out[:n] = out
        for i in range(n):
            self._seq_ptrs[i][0] = int(seq[i])
        self.batch.n_tokens = n
        rc = ll.llama_decode(self.ptr, self.batch)
        if rc != 0:
            raise ModelLoadError(f"llama_decode failed ({rc}): {last_error() or 'out of memory or context full'}")

    def run(self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One llama_decode over ``len(tokens)`` tokens.

        Plain context: every token's hidden state, (n, n_embd) float32, as a view on
        llama.cpp's output buffer, valid until the next call (with embeddings on, llama.cpp
        outputs every token whatever the batch asks). Last-token context: the rows of the
        tokens marked in ``out`` (bool, one per token), in batch order, as a new array.
        """
        n = len(tokens)
        if not self.last_only:
            self._decode(tokens, pos, seq, 1)
            return np.ctypeslib.as_array(ll.llama_get_embeddings(self.ptr), shape=(n, self.model.n_embd))
        cap = self.capture
        cap.rows.clear()
        self._decode(tokens, pos, seq, out)
        want = int(np.count_nonzero(out))
        rows = np.concatenate(cap.rows) if cap.rows else np.zeros(0, np.float32)
        cap.rows.clear()
        if rows.size != want * self.model.n_embd:
            raise FastPathError(
                f"the eval callback captured {rows.size // max(self.model.n_embd, 1)} rows of {CAPTURE_NODE.decode()} "
                f"for {want} outputs"
            )
        return rows.reshape(want, self.model.n_embd)

    def run_all_rows(self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """On a last-token context: one decode the plain way (embeddings on, every token an
        output, the graph run to the end), for checking the fast path against. Needs no
        more tokens than the context's output limit (``n_seq_max``)."""
        if len(tokens) > self.n_seq_max:
            raise ValueError("a plain run on a last-token context takes at most n_seq_max tokens")
        self.capture.enabled = False
        ll.llama_set_embeddings(self.ptr, True)
        try:
            self._decode(tokens, pos, seq, 1)
            rows = np.ctypeslib.as_array(ll.llama_get_embeddings(self.ptr), shape=(len(tokens), self.model.n_embd))
            return rows.copy()
        finally:
            ll.llama_set_embeddings(self.ptr, False)
            self.capture.enabled = True
            self.capture.rows.clear()

    def close(self) -> None:
        if getattr(self, "ptr", None):
            ll.llama_batch_free(self.batch)
            ll.llama_free(self.ptr)
            self.ptr = None


def rank_scores(model: Model, seqs: list[np.ndarray], *, n_threads: int | None = None, kv_type: str = "f32") -> np.ndarray:
    """llama.cpp's own RANK pooling (as llama-server --rerank runs it), one sequence at a time: (n, n_cls_out)
    float32, a Qwen3 reranker's yes/no softmax or a cross-encoder's logits (a reference for the numpy heads)."""
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
        init()
        self.lines: list[str] = []
        _capture.append(self.lines)
        return self.lines

    def __exit__(self, *exc) -> None:
        _capture.remove(self.lines)

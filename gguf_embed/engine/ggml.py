"""ggml itself, through ctypes: libggml-base's tensor calls that llama-cpp-python does not bind.

The eval callback of the Qwen3 fast path lives here (tensor names and reads); so does any other
direct use of ggml (quantising with per-column importance, for instance). The library is found
where llama-cpp-python found libllama, so a ``LLAMA_CPP_LIB_PATH`` build is used throughout.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp as ll
import numpy as np


def _ggml_base() -> ctypes.CDLL:
    """libggml-base, next to libllama: tensor names and reads for the eval callback."""
    from llama_cpp import llama_cpp as bindings  # where llama-cpp-python found libllama (LLAMA_CPP_LIB_PATH)

    folder = Path(bindings._base_path)
    names = ["libggml-base.so", "libggml-base.dylib", "ggml-base.dll", "libggml-base.dll"]
    path = next((folder / n for n in names if (folder / n).exists()), None)
    lib = ctypes.CDLL(str(path)) if path is not None else bindings._lib  # a static build: all in libllama
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    lib.ggml_op_name.restype = ctypes.c_char_p
    return lib


def _lib() -> ctypes.CDLL:
    global _GGML
    if _GGML is None:
        _GGML = _ggml_base()
    return _GGML


_GGML = None
CAPTURE_NODE = b"result_norm"  # the final-norm hidden states, the node before the LM head


class RowCapture:
    """The eval callback of a last-token context.

    llama.cpp's scheduler asks, node by node, whether we want a tensor's data. We say yes
    only to ``result_norm``; when it is computed we copy its rows (the outputs of this
    ubatch) and answer "stop": the rest of that graph split, the LM head, never runs.
    Asked once per node per ubatch, so it stays as small as it can be.
    """

    def __init__(self, target: bytes = CAPTURE_NODE):
        lib = _lib()
        get_name, nbytes, tensor_get = lib.ggml_get_name, lib.ggml_nbytes, lib.ggml_backend_tensor_get
        self.rows: list[np.ndarray] = []
        self.enabled = True

        def callback(t, ask, _user_data):  # pragma: no cover - called from C
            if get_name(t) != target:
                return False
            if ask:
                return self.enabled
            n = nbytes(t)
            buf = np.empty(n // 4, dtype=np.float32)
            if n:
                tensor_get(t, buf.ctypes.data, 0, n)
            self.rows.append(buf)
            return False

        self.callback = ll.ggml_backend_sched_eval_callback(callback)


# --- importance of each weight matrix's inputs (llama.cpp's imatrix) -------------------

_MAX_DIMS, _MAX_SRC, _MAX_OP_PARAMS, _MAX_NAME = 4, 10, 64, 64


class _Tensor(ctypes.Structure):
    """``struct ggml_tensor`` of the ggml this llama-cpp-python was built with (ggml/include/ggml.h);
    checked against ``ggml_get_name`` on the first node seen."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * _MAX_DIMS),
        ("nb", ctypes.c_size_t * _MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * _MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * _MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


def _op_id(name: bytes) -> int:
    lib = _lib()
    for i in range(512):
        if lib.ggml_op_name(i) == name:
            return i
    raise RuntimeError(f"this ggml has no {name.decode()} op")  # pragma: no cover


def weight_name(name: bytes) -> str:
    """A weight's own name from the scheduler's copies (``CUDA0#blk.0.attn_q.weight#0``), as imatrix.cpp reads it."""
    text = name.decode("utf-8", "replace")
    return text.split("#")[1] if "#" in text else text


class ImportanceCapture:
    """An eval callback that sums, per weight matrix ``blk.*`` and per input dimension, the squares
    of the matrix's inputs (``src1`` of every ``MUL_MAT`` whose ``src0`` is that weight), and counts
    the input rows: what llama.cpp's ``llama-imatrix`` accumulates (tools/imatrix/imatrix.cpp).

    ``stop_at`` (a node name, e.g. ``result_norm``) ends each graph there: a decoder's LM head
    is neither run nor collected. ``sums[name]`` is float64 (n_mat, n_in), ``counts[name]`` rows.
    An error inside the callback (which cannot raise into C) stops the graph and lands in ``errors``.
    """

    def __init__(self, stop_at: bytes | None = CAPTURE_NODE):
        self._lib = _lib()
        self._mul_mat = _op_id(b"MUL_MAT")
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.checked = False
        get_name = self._lib.ggml_get_name

        def callback(ptr, ask, _user_data):  # pragma: no cover - called from C
            try:
                t = _Tensor.from_address(ptr)
                if not self.checked:
                    if t.name != get_name(ptr):
                        raise ValueError("struct ggml_tensor of this ggml differs from the one gguf-embed reads")
                    self.checked = True
                if stop_at is not None and t.name == stop_at:
                    return bool(ask)  # asked: yes; computed: stop the graph here
                if ask:
                    return self._wanted(t)
                if self._wanted(t):
                    self._collect(t)
                return True
            except Exception as exc:  # noqa: BLE001 - an exception cannot cross into C; the caller raises it
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return False

        self.callback = ll.ggml_backend_sched_eval_callback(callback)

    def _wanted(self, t: _Tensor) -> bool:
        if t.op != self._mul_mat or not t.src[0] or not t.src[1]:
            return False
        src0, src1 = _Tensor.from_address(t.src[0]), _Tensor.from_address(t.src[1])
        return src1.type == 0 and weight_name(src0.name).startswith("blk.")  # GGML_TYPE_F32 inputs

    def _collect(self, t: _Tensor) -> None:
        src0, src1 = _Tensor.from_address(t.src[0]), _Tensor.from_address(t.src[1])
        n = self._lib.ggml_nbytes(t.src[1])
        raw = np.empty(n, dtype=np.uint8)
        self._lib.ggml_backend_tensor_get(t.src[1], raw.ctypes.data, 0, n)
        ne, nb = list(src1.ne), list(src1.nb)
        x = np.lib.stride_tricks.as_strided(raw.view(np.float32), shape=ne[::-1], strides=nb[::-1])
        sq = np.square(x, dtype=np.float64).sum(axis=2)  # (ne3, ne2, ne0): summed over the rows
        n_mat = int(src0.ne[2] * src0.ne[3])
        acc = np.zeros((n_mat, ne[0]))
        for i3 in range(ne[3]):  # 3-D inputs of a 2-D weight are flattened, as imatrix.cpp does
            for i2 in range(ne[2]):
                acc[(i3 % src0.ne[3]) * src0.ne[2] + (i2 % src0.ne[2])] += sq[i3, i2]
        name = weight_name(src0.name)
        if name in self.sums and self.sums[name].shape != acc.shape:
            raise ValueError(f"inconsistent input size for {name}: {acc.shape} after {self.sums[name].shape}")
        self.sums[name] = self.sums[name] + acc if name in self.sums else acc
        self.counts[name] = self.counts.get(name, 0) + int(ne[1] * ne[2] * ne[3]) // n_mat


# --- devices: what ggml's backend registry has loaded -----------------------------------

#: ggml's enum ggml_backend_dev_type
DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


def _registry() -> ctypes.CDLL:
    """libggml (the backend registry; a static build: all in libllama), with the calls it needs."""
    from llama_cpp import llama_cpp as bindings

    folder = Path(bindings._base_path)
    names = ["libggml.so", "libggml.dylib", "ggml.dll", "libggml.dll"]
    path = next((folder / n for n in names if (folder / n).exists()), None)
    lib = ctypes.CDLL(str(path)) if path is not None else bindings._lib
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_reg_get.restype = ctypes.c_void_p
    for name in ("ggml_backend_dev_name", "ggml_backend_dev_description", "ggml_backend_reg_name"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(ctypes.c_size_t)]
    lib.ggml_backend_dev_memory.restype = None
    return lib


def backend_names() -> list[str]:
    """The backends llama.cpp has loaded (CPU, CUDA, Vulkan, Metal...)."""
    ll.llama_backend_init()
    lib = _registry()
    return [(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)) or b"?").decode()
            for i in range(lib.ggml_backend_reg_count())]


def device_list() -> list[dict]:
    """Every device llama.cpp sees: name, description, type (cpu, gpu, igpu, accel), free and total bytes."""
    ll.llama_backend_init()
    lib = _registry()
    out = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append({"name": (lib.ggml_backend_dev_name(dev) or b"?").decode(),
                    "description": (lib.ggml_backend_dev_description(dev) or b"").decode(errors="replace"),
                    "type": DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev), "?"),
                    "free_bytes": int(free.value), "total_bytes": int(total.value)})
    return out

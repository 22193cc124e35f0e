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
    return lib


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
        global _GGML
        if _GGML is None:
            _GGML = _ggml_base()
        get_name, nbytes, tensor_get = _GGML.ggml_get_name, _GGML.ggml_nbytes, _GGML.ggml_backend_tensor_get
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

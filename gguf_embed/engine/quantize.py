"""llama.cpp's quantizer, with the overrides gguf-embed's conversion uses (head and embedding types,
per-tensor types, importance weights, metadata written into the output)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import llama_cpp as ll
import numpy as np

from ..errors import ConversionError
from .llama import init, last_error, reset_errors


def quantize_file(src: Path, dst: Path, quant: str, threads: int, *, output_type: int | None = None,
                  token_embd_type: int | None = None, imatrix: dict[str, np.ndarray] | None = None,
                  metadata: dict[str, str | int] | None = None, tensor_types: dict[str, int] | None = None) -> None:
    """llama.cpp's quantizer; ``output_type`` / ``token_embd_type`` (ggml types) override its
    choice for the output head and the token embeddings, ``tensor_types`` (regex over tensor names
    -> ggml type, first match wins, as ``llama-quantize --tensor-type``) for any other tensor.
    ``imatrix``: per weight, the mean square of each input column (what llama-quantize reads from an
    imatrix file), as importance weights; ``metadata``: keys written into the output (strings up to
    127 bytes, or integers)."""
    init()
    ftype = getattr(ll, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise ConversionError(f"llama.cpp has no quantisation type {quant}")
    params = ll.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    if output_type is not None:
        params.output_tensor_type = output_type
    if token_embd_type is not None:
        params.token_embedding_type = token_embd_type
    keep = []  # the C arrays and buffers params points into, alive until the call returns
    if imatrix:
        entries = (ll.llama_model_imatrix_data * (len(imatrix) + 1))()
        for e, (name, values) in zip(entries, sorted(imatrix.items())):
            arr = np.ascontiguousarray(values, dtype=np.float32).ravel()
            keep.append(arr)
            e.name, e.data, e.size = name.encode(), arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), arr.size
        params.imatrix = entries  # the last entry, all zeros, ends the list
        keep.append(entries)
    if metadata:
        params.kv_overrides = _kv_overrides(metadata)
        keep.append(params.kv_overrides)
    if tensor_types:
        rules = (ll.llama_model_tensor_override * (len(tensor_types) + 1))()  # a null pattern ends the list
        for rule, (pattern, ggml_type) in zip(rules, tensor_types.items()):
            rule.pattern, rule.type = pattern.encode(), int(ggml_type)
        params.tt_overrides = rules
        keep.append(rules)
    reset_errors()
    rc = ll.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise ConversionError(f"llama.cpp could not quantise to {quant}: {last_error() or f'error {rc}'}")


def _kv_overrides(metadata: dict[str, str | int]):
    arr = (ll.llama_model_kv_override * (len(metadata) + 1))()  # an empty key ends the list
    for kv, (key, value) in zip(arr, metadata.items()):
        kv.key = key.encode()[:127]
        if isinstance(value, str):
            kv.tag = ll.LLAMA_KV_OVERRIDE_TYPE_STR
            kv.value.val_str = value.encode("utf-8")[:127]
        else:
            kv.tag = ll.LLAMA_KV_OVERRIDE_TYPE_INT
            kv.value.val_i64 = int(value)
    return arr

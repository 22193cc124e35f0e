"""Read Hugging Face weights tensor by tensor, as numpy, without torch.

Safetensors are parsed directly (an 8-byte header length, a JSON header, raw data) and
each tensor is read with one positioned read, so peak memory stays near the largest
tensor rather than the model. BF16 comes back as ``uint16`` bit patterns.

Pickle checkpoints (``pytorch_model.bin``) are read only on request, through an
unpickler that accepts nothing but the handful of globals a state dict needs.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import ConversionError

SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor lives; ``load()`` reads it."""

    name: str
    dtype: str  # safetensors spelling: F32, F16, BF16, ...
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(SAFETENSORS_DTYPES[self.dtype]).itemsize


def _safetensors_refs(path: Path) -> list[TensorRef]:
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > 100 * 1024 * 1024:
                raise ValueError("header too large")
            header = json.loads(fh.read(n))
    except (OSError, ValueError, struct.error) as exc:
        raise ConversionError(f"{path.name} is not a readable safetensors file ({exc})") from None
    base = 8 + n
    refs = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in SAFETENSORS_DTYPES:
            raise ConversionError(f"tensor {name} in {path.name} has unsupported dtype {dtype}")
        start, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        np_dtype = np.dtype(SAFETENSORS_DTYPES[dtype])

        def load(start=start, end=end, shape=shape, np_dtype=np_dtype) -> np.ndarray:
            count = (end - start) // np_dtype.itemsize
            arr = np.fromfile(path, dtype=np_dtype, count=count, offset=base + start)
            return arr.reshape(shape)

        refs.append(TensorRef(name, dtype, shape, load))
    return refs


#: heads kept beside the model's weights (bge-m3's, see convert.m3_heads): not part of the encoder
HEAD_STEMS = ("sparse_linear", "colbert_linear")


def safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / f for f in sorted(set(weight_map.values()))]
    return sorted(p for p in folder.glob("*.safetensors") if p.stem not in HEAD_STEMS)


def pickle_files(folder: Path) -> list[Path]:
    index = folder / "pytorch_model.bin.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [folder / f for f in sorted(set(weight_map.values()))]
    return sorted(folder.glob("pytorch_model*.bin"))


# --- restricted reader for torch's zip pickle format --------------------------------

_TORCH_STORAGE = {
    "FloatStorage": ("F32", np.float32),
    "HalfStorage": ("F16", np.float16),
    "BFloat16Storage": ("BF16", np.uint16),
    "DoubleStorage": ("F64", np.float64),
    "LongStorage": ("I64", np.int64),
    "IntStorage": ("I32", np.int32),
    "ShortStorage": ("I16", np.int16),
    "CharStorage": ("I8", np.int8),
    "ByteStorage": ("U8", np.uint8),
    "BoolStorage": ("BOOL", np.bool_),
}


@dataclass
class _Storage:
    dtype: str
    np_dtype: type
    key: str


@dataclass
class _LazyTensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, size, stride, *_args):
    return _LazyTensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_args):
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Accepts only the globals a plain state dict needs; anything else is refused."""

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _TORCH_STORAGE:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a pickle checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or storage_type not in _TORCH_STORAGE:
            raise pickle.UnpicklingError(f"unsupported storage {storage_type!r}")
        dtype, np_dtype = _TORCH_STORAGE[storage_type]
        return _Storage(dtype, np_dtype, str(key))


def _pickle_refs(path: Path) -> list[TensorRef]:
    try:
        zf = zipfile.ZipFile(path)
        pkl_name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        prefix = pkl_name[: -len("data.pkl")]
        with zf.open(pkl_name) as fh:
            state = _StateDictUnpickler(fh).load()
    except (zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, ValueError, EOFError) as exc:
        raise ConversionError(f"cannot read pickle checkpoint {path.name}: {exc}") from None
    refs = []
    for name, t in state.items():
        if not isinstance(t, _LazyTensor):
            continue

        def load(t=t) -> np.ndarray:
            with zipfile.ZipFile(path) as z:
                raw = z.read(f"{prefix}data/{t.storage.key}")
            base = np.frombuffer(raw, dtype=t.storage.np_dtype)
            item = base.itemsize
            return np.lib.stride_tricks.as_strided(
                base[t.offset :], shape=t.shape, strides=tuple(s * item for s in t.stride)
            ).copy()

        refs.append(TensorRef(name, t.storage.dtype, t.shape, load))
    return refs


def iter_tensor_refs(folder: Path, *, allow_pickle: bool = False) -> Iterator[TensorRef]:
    files = safetensors_files(folder)
    if files:
        for f in files:
            yield from _safetensors_refs(f)
        return
    pickles = pickle_files(folder)
    if pickles and allow_pickle:
        for f in pickles:
            yield from _pickle_refs(f)
        return
    if pickles:
        raise ConversionError(
            f"{folder} has only pickle weights ({pickles[0].name}); pickle files can run arbitrary "
            "code when loaded, so they are refused. Use a safetensors copy of the model, or pass "
            "--allow-pickle if you trust this file"
        )
    raise ConversionError(f"{folder} has no weights (*.safetensors or pytorch_model.bin)")


def to_float32(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32, copy=False)


def to_bf16_bits(arr: np.ndarray, dtype: str) -> np.ndarray:
    """float -> bfloat16 bit patterns, round to nearest even (NaN kept quiet)."""
    if dtype == "BF16":
        return arr
    bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
    rounded = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(arr)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded

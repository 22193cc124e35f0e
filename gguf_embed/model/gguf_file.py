"""The one GGUF reader: metadata, tensor table and a few small tensors, without llama.cpp.

``gguf.GGUFReader`` parses every metadata value in Python (seconds for a 150k-token
vocabulary); this reader keeps scalars, strings and short arrays and leaves long arrays
(token lists, merges, scores) as references that are read only when asked for. Tensor
data is read through a memory map, only for the tensors asked for.
"""

from __future__ import annotations

import hashlib
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelLoadError, ModelNotFoundError

__all__ = ["GGUF_MAGIC", "GGUFFile", "ArrayRef", "TensorInfo", "check_gguf_file", "read_gguf", "read_tensors",
           "file_type_name"]

GGUF_MAGIC = b"GGUF"
SHORT_ARRAY = 64  # arrays up to this length are read with the header
# GGUF value types -> struct format (strings 8, arrays 9)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
          7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class ArrayRef:
    """A long metadata array left in the file: its element type, length and where it starts."""

    etype: int
    count: int
    offset: int

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # GGUF order: row length first
    type: int  # ggml type id
    offset: int  # from the start of the data section

    @property
    def n_bytes(self) -> int:
        import gguf

        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(self.type)]
        return int(np.prod(self.dims, dtype=np.int64)) // block * size

    @property
    def shape(self) -> tuple[int, ...]:
        """numpy order: rows first."""
        return tuple(reversed(self.dims))


class _Cursor:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string(self) -> str:
        n = self.unpack("Q")
        if self.pos + n > len(self.buf):
            raise struct.error("string past the end of the file")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos]).decode("utf-8", "replace")

    def skip_strings(self, count: int) -> None:
        buf, pos, unpack = self.buf, self.pos, struct.unpack_from
        for _ in range(count):
            pos += 8 + unpack("<Q", buf, pos)[0]
        self.pos = pos

    def array(self, etype: int, count: int) -> list:
        if etype in _SCALARS:
            n = np.dtype(_NUMPY[etype]).itemsize * count
            out = np.frombuffer(self.buf[self.pos:self.pos + n], dtype=_NUMPY[etype]).tolist()
            self.pos += n
            return out
        return [self.value(etype) for _ in range(count)]

    def skip_array(self, etype: int, count: int) -> None:
        if etype in _SCALARS:
            self.pos += struct.calcsize("<" + _SCALARS[etype]) * count
        elif etype == _STRING:
            self.skip_strings(count)
        else:
            for _ in range(count):
                self.value(etype)

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("IQ")
            if count <= SHORT_ARRAY:
                return self.array(etype, count)
            ref = ArrayRef(etype, count, self.pos)
            self.skip_array(etype, count)
            return ref
        if vtype not in _SCALARS:
            raise struct.error(f"unknown value type {vtype}")
        return self.unpack(_SCALARS[vtype])


@dataclass
class GGUFFile:
    path: Path
    version: int
    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    data_start: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.meta.get(key, default)

    def array(self, key: str) -> list | None:
        """A metadata array in full (read from the file if it was left there)."""
        value = self.meta.get(key)
        if not isinstance(value, ArrayRef):
            return value
        with _mapped(self.path) as buf:
            cur = _Cursor(buf)
            cur.pos = value.offset
            return cur.array(value.etype, value.count)

    def ndarray(self, key: str) -> np.ndarray | None:
        """A numeric metadata array as numpy (a copy), read from the file if it was left there."""
        value = self.meta.get(key)
        if value is None:
            return None
        if not isinstance(value, ArrayRef):
            return np.asarray(value)
        if value.etype not in _NUMPY:
            raise ModelLoadError(f"{self.path}: metadata {key} is not a numeric array")
        dtype = np.dtype(_NUMPY[value.etype]).newbyteorder("<")
        with _mapped(self.path) as buf:
            return np.frombuffer(buf, dtype=dtype, count=value.count, offset=value.offset).copy()

    def array_len(self, key: str) -> int:
        value = self.meta.get(key)
        return 0 if value is None else len(value)

    def read_tensors(self, prefix: str) -> dict[str, np.ndarray]:
        """The tensors whose names start with ``prefix``, dequantised to float32 (rows, cols)."""
        import gguf

        out = {}
        with _mapped(self.path) as buf:
            for t in self.tensors.values():
                if not t.name.startswith(prefix):
                    continue
                qt = gguf.GGMLQuantizationType(t.type)
                a = self.data_start + t.offset
                raw = np.frombuffer(buf[a:a + t.n_bytes], dtype=np.uint8)  # a copy: the map closes after
                rows = int(np.prod(t.dims[1:], dtype=np.int64)) if len(t.dims) > 1 else 1
                vals = gguf.quants.dequantize(raw.reshape(rows, -1), qt).astype(np.float32)
                out[t.name] = vals.reshape(t.shape) if len(t.dims) > 1 else vals.reshape(-1)
        return out


class _mapped:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "rb")
        try:
            self.buf = mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            self.fh.close()
            raise ModelLoadError(f"{self.path} is empty, not a GGUF file") from None
        return self.buf

    def __exit__(self, *exc):
        self.buf.close()
        self.fh.close()


def file_type_name(file_type) -> str | None:
    """``general.file_type`` (llama.cpp's LLAMA_FTYPE) as llama.cpp names it: F16, Q8_0, Q4_K_M..."""
    if file_type is None:
        return None
    from gguf import LlamaFileType

    try:
        return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        return str(file_type)


def check_gguf_file(path: Path) -> None:
    """A one-line error unless ``path`` is a readable file that starts like a GGUF."""
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist", param="model")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path} is not a GGUF file")


def read_gguf(path: str | Path) -> GGUFFile:
    """Metadata and tensor table of a GGUF (no tensor data); one-line errors for bad files."""
    path = Path(path)
    check_gguf_file(path)
    try:
        with _mapped(path) as buf:
            cur = _Cursor(buf)
            cur.pos = 4
            version, n_tensors, n_kv = cur.unpack("IQQ")
            if version not in (2, 3):  # v1 had 32-bit counts; llama.cpp reads 2 and 3
                raise ModelLoadError(f"{path} is not a GGUF file llama.cpp can read (version {version}; "
                                     "it reads 2, 3)")
            out = GGUFFile(path, version)
            for _ in range(n_kv):
                key, vtype = cur.string(), cur.unpack("I")
                out.meta[key] = cur.value(vtype)
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = cur.unpack("I")
                dims = tuple(cur.unpack("Q") for _ in range(n_dims))
                qtype, offset = cur.unpack("IQ")
                out.tensors[name] = TensorInfo(name, dims, qtype, offset)
            alignment = int(out.meta.get("general.alignment", 32) or 32)
            out.data_start = (cur.pos + alignment - 1) // alignment * alignment
    except (struct.error, ValueError, TypeError, OverflowError, MemoryError):
        raise ModelLoadError(f"{path} is a truncated or corrupt GGUF file") from None
    return out


def read_tensors(path: str | Path, prefix: str) -> dict[str, np.ndarray]:
    """The tensors of a GGUF whose names start with ``prefix``, as float32."""
    return read_gguf(path).read_tensors(prefix)


def sha256_file(path: str | Path, block: int = 8 << 20) -> str:
    """The sha256 of a file, read in blocks (a model file is hashed once and remembered by the cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()

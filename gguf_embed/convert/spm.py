"""SentencePiece BPE vocabularies (Gemma's ``tokenizer.model``) for llama.cpp's SPM tokenizer.

``tokenizer.model`` is a protobuf ``ModelProto``; the few fields llama.cpp needs are read
here with a minimal wire-format reader (no sentencepiece, no protobuf package):

- ``pieces`` (field 1), each a ``SentencePiece``: ``piece`` (1, text), ``score`` (2, float),
  ``type`` (3: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte; 1 when absent);
- ``normalizer_spec`` (field 3): ``add_dummy_prefix`` (3, true when absent).

The GGUF gets what llama.cpp's converter writes for a SentencePiece model: tokenizer model
``llama``, pre-tokenizer ``default``, pieces, scores and types (a user-defined piece is written
as normal, as llama.cpp's converter does; the added tokens of tokenizer.json then mark the special
ones as control), the list padded to the config's vocabulary size, and ``add_space_prefix``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import gguf

from ..errors import ConversionError

__all__ = ["read_spm", "write_spm"]

UNUSED_SCORE = -10000.0
ADDED_SCORE = -1000.0
# SentencePiece's piece types -> llama.cpp's token types (user-defined pieces count as normal)
_TYPES = {1: gguf.TokenType.NORMAL, 2: gguf.TokenType.UNKNOWN, 3: gguf.TokenType.CONTROL,
          4: gguf.TokenType.NORMAL, 5: gguf.TokenType.UNUSED, 6: gguf.TokenType.BYTE}
_KEEP = (gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.BYTE)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ConversionError("tokenizer.model is truncated")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    """(field number, value) of one protobuf message: an int, or bytes for length-delimited and fixed fields."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, i = buf[i:i + width], i + width
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ConversionError(f"tokenizer.model is not a SentencePiece model (wire type {wire})")
        yield key >> 3, value


def read_spm(path: Path) -> tuple[list[str], list[float], list[int], bool]:
    """(pieces, scores, llama.cpp token types, add_dummy_prefix) of a SentencePiece model file."""
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"cannot read {path.name}: {exc}") from None
    pieces, scores, types, dummy_prefix = [], [], [], True
    for num, value in _fields(buf):
        if num == 1 and isinstance(value, bytes):
            piece, score, kind = "", 0.0, 1
            for f, v in _fields(value):
                if f == 1:
                    piece = v.decode("utf-8")
                elif f == 2:
                    (score,) = struct.unpack("<f", v)
                elif f == 3:
                    kind = v
            pieces.append(piece)
            scores.append(float(score))
            types.append(_TYPES.get(kind, gguf.TokenType.NORMAL))
        elif num == 3 and isinstance(value, bytes):
            dummy_prefix = next((bool(v) for f, v in _fields(value) if f == 3), True)
    if not pieces:
        raise ConversionError(f"{path.name} has no pieces; is it a SentencePiece model?")
    return pieces, scores, types, dummy_prefix


def write_spm(w: gguf.GGUFWriter, folder: Path, tokenizer: dict, n_config: int) -> int:
    """The SPM vocabulary keys; returns the number of tokens written."""
    path = folder / "tokenizer.model"
    if not path.is_file():
        raise ConversionError(f"{folder} has no tokenizer.model; a SentencePiece (Gemma) model needs it")
    pieces, scores, types, dummy_prefix = read_spm(path)
    n_spm = len(pieces)
    n_vocab = max(n_config, len(pieces))
    pad = n_vocab - len(pieces)
    pieces += [f"[PAD{i}]" for i in range(len(pieces), n_vocab)]
    scores += [UNUSED_SCORE] * pad
    types += [gguf.TokenType.UNUSED] * pad
    for added in tokenizer.get("added_tokens", []):
        tid = int(added["id"])
        if tid >= n_vocab:
            raise ConversionError(f"added token {added['content']!r} has id {tid}, past the {n_vocab} embeddings")
        if tid < n_spm and types[tid] in _KEEP:  # <unk>, <bos>... and byte pieces keep the model's own type
            continue
        if added.get("special"):
            pieces[tid], types[tid] = added["content"], gguf.TokenType.CONTROL
        else:
            pieces[tid], types[tid] = added["content"].replace("\u2581", " "), gguf.TokenType.USER_DEFINED
        if tid >= n_spm:
            scores[tid] = ADDED_SCORE
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(dummy_prefix)
    return n_vocab

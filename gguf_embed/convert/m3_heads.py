"""bge-m3's sparse and ColBERT heads: ``sparse_linear`` (hidden -> 1) and ``colbert_linear``
(hidden -> hidden), each a torch ``Linear`` state dict (``weight``, ``bias``) beside the model in
``sparse_linear.pt`` / ``colbert_linear.pt`` (or ``.safetensors`` copies), as BAAI's repo has them.

They are written as metadata (``gguf_embed.head.{sparse,colbert}.{weight,bias}``: little-endian float32
bytes in base64; ``.rows``; ``gguf_embed.heads`` naming them), not as tensors: llama.cpp refuses a
file with tensors its graph does not create ("wrong number of tensors"), and it ignores metadata it
does not know, so the file still loads and embeds the same in stock llama.cpp. (A float32 metadata
array would be the typed form, but llama.cpp formats every element of every array for its load log:
1-2 s more per load for bge-m3's 1024 x 1024 ColBERT weight; a string costs nothing.) Quantising
copies metadata as it is, so every quantisation keeps the heads at full precision (5.3 MiB of base64
for bge-m3's ColBERT head).

``.pt`` files are read only with ``--allow-pickle`` (through the converter's unpickler that accepts
nothing but tensors); without it the conversion goes on without those heads and says so.
"""

from __future__ import annotations

import base64
import json
import logging

import gguf
import numpy as np

from .. import choices, keys
from ..errors import ConversionError
from .hf import HFModel
from .weights import HEAD_STEMS, _pickle_refs, _safetensors_refs, to_float32

__all__ = ["HEAD_FILES", "read_heads", "write_heads", "skip_ids", "f32_base64"]

log = logging.getLogger("gguf_embed.convert")

HEAD_FILES = dict(zip(choices.HEAD_OUTPUTS, HEAD_STEMS))
#: the tokenizer's tokens FlagEmbedding drops from the sparse weights
SKIPPED_SPECIALS = ("cls_token", "eos_token", "pad_token", "unk_token")


def _head_refs(hf: HFModel, stem: str, allow_pickle: bool):
    st, pt = hf.folder / f"{stem}.safetensors", hf.folder / f"{stem}.pt"
    if st.is_file():
        return _safetensors_refs(st)
    if pt.is_file():
        if allow_pickle:
            return _pickle_refs(pt)
        log.warning("%s is a pickle file and was not read, so the GGUF has no %s head; pass --allow-pickle to "
                    "keep it (it is read by an unpickler that accepts nothing but tensors)", pt.name, stem)
    return None


def read_heads(hf: HFModel, allow_pickle: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(weight (out, in), bias (out,)) float32 per head found in the folder."""
    hidden = int(hf.config["hidden_size"])
    out = {}
    for kind, stem in HEAD_FILES.items():
        refs = _head_refs(hf, stem, allow_pickle)
        if refs is None:
            continue
        by_name = {r.name.rsplit(".", 1)[-1]: r for r in refs}
        if set(by_name) != {"weight", "bias"}:
            raise ConversionError(f"{stem} should hold a Linear layer's weight and bias, not {sorted(by_name)}")
        w = to_float32(by_name["weight"].load(), by_name["weight"].dtype).astype(np.float32)
        b = to_float32(by_name["bias"].load(), by_name["bias"].dtype).astype(np.float32).reshape(-1)
        if w.ndim != 2 or w.shape[1] != hidden or b.shape != (w.shape[0],) or (kind == "sparse" and w.shape[0] != 1):
            raise ConversionError(f"{stem} has weight {w.shape} and bias {b.shape}; expected ({'1' if kind == 'sparse' else 'out'}, "
                                  f"{hidden}) and (out,)")
        out[kind] = (w, b)
    return out


def _token_id(hf: HFModel, content: str) -> int | None:
    for t in hf.tokenizer.get("added_tokens", []):
        if t.get("content") == content:
            return int(t["id"])
    table = (hf.tokenizer.get("model") or {}).get("vocab")
    if isinstance(table, dict):
        return table.get(content)
    if isinstance(table, list):  # Unigram: [[piece, score], ...]
        return next((i for i, (piece, _) in enumerate(table) if piece == content), None)
    return None


def skip_ids(hf: HFModel) -> list[int]:
    """The ids of the tokenizer's CLS, EOS, PAD and UNK tokens (tokenizer_config.json, else
    special_tokens_map.json), as FlagEmbedding drops them from the sparse weights."""
    found = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = hf.folder / name
        if path.is_file():
            cfg = json.loads(path.read_text(encoding="utf-8"))
            for key in SKIPPED_SPECIALS:
                value = cfg.get(key)
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str):
                    found[key] = value
    ids = {_token_id(hf, text) for text in found.values()}
    return sorted(i for i in ids if i is not None)


def f32_base64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype="<f4").tobytes()).decode("ascii")


def write_heads(w: gguf.GGUFWriter, hf: HFModel, allow_pickle: bool) -> list[str]:
    """Write the heads the folder has; returns their names."""
    heads = read_heads(hf, allow_pickle)
    for kind, (weight, bias) in heads.items():
        w.add_string(keys.HEAD_WEIGHT.format(kind), f32_base64(weight))
        w.add_string(keys.HEAD_BIAS.format(kind), f32_base64(bias))
        w.add_uint32(keys.HEAD_ROWS.format(kind), int(weight.shape[0]))
    if "sparse" in heads:
        w.add_array(keys.HEAD_SKIP_IDS, skip_ids(hf))
    if heads:
        w.add_array(keys.HEADS, sorted(heads))
    return sorted(heads)

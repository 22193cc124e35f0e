"""The GGUF tensor table of a ``models.toml`` entry at a quantisation, without the file.

Planning before a download (``gguf-embed plan NAME --quant Q4_K_M``) needs the bytes of
every tensor as ``gguf-embed convert`` would write them: the names and shapes follow from
the entry's ``shape`` table, the types from the rules of llama.cpp's quantizer for the
mixtures gguf-embed offers (base type per file type; the output head and a tied token
embedding as Q6_K for K-quants; more bits for half of ``attn_v`` and ``ffn_down`` in the
``_M`` mixtures; a smaller compatible type where a row length does not divide the block)
and the converter's own choices (norms and biases F32; an explicit Q2_K head for decoder
embedding models, whose head never runs).

The **embedding mix** (``convert --mix embedding``, the default for embedding models) changes
llama.cpp's mixture in two places, both for a model that is only ever pooled:

- the token embeddings are looked up, never multiplied as an output head, so they take the
  layers' base type (at least 4 bits) instead of the head's Q6_K / Q8_0;
- ``attn_v`` and ``ffn_down``, the matrices whose error moves a pooled vector most (measured on
  all-MiniLM-L6-v2 by keeping one group at F16 at a time: docs/benchmarks/quantisation.md), get in every layer the
  type llama.cpp gives only some of its layers.

On all-MiniLM-L6-v2 Q4_K_M that is 17% fewer bytes and half the cosine error (docs/benchmarks/quantisation.md). These
rules are the ``tensor_types`` handed to llama.cpp's quantizer (``mix_overrides``), and this
module's tensor table follows them, so planning stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf

from ..registry import ModelEntry

__all__ = ["TensorSpec", "tensor_table", "HEAD_TYPE", "token_embd_type", "head_types", "mix_overrides", "default_mix"]

T = gguf.GGMLQuantizationType

#: llama.cpp quantizer file type -> the base type of its 2-D weights
BASE_TYPES = {
    "F32": T.F32, "F16": T.F16, "BF16": T.BF16, "Q8_0": T.Q8_0, "Q6_K": T.Q6_K, "Q5_K_M": T.Q5_K,
    "Q5_K_S": T.Q5_K, "Q4_K_M": T.Q4_K, "Q4_K_S": T.Q4_K, "Q5_0": T.Q5_0, "Q4_0": T.Q4_0,
    # below: the base type only (the mixes give some tensors more bits), so a plan is a slight underestimate
    "Q3_K_L": T.Q3_K, "Q3_K_M": T.Q3_K, "Q3_K_S": T.Q3_K, "Q2_K": T.Q2_K, "IQ4_XS": T.IQ4_XS, "IQ4_NL": T.IQ4_NL,
    "IQ3_M": T.IQ3_S, "IQ3_S": T.IQ3_S, "IQ3_XXS": T.IQ3_XXS,
}
DIRECT = ("F32", "F16", "BF16")
#: the type of the explicit output head gguf-embed writes for decoder embedding models: the
#: head is never computed (last-token fast path), so only its size matters, and Q2_K is the
#: smallest type llama.cpp's quantizer writes without an importance matrix that every backend runs
HEAD_TYPE = T.Q2_K
# where a row length does not divide a type's block: llama.cpp's quantizer falls back to these
_FALLBACK = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0,
             T.IQ4_XS: T.IQ4_NL, T.IQ3_S: T.IQ4_NL, T.IQ3_XXS: T.IQ4_NL}


#: the embedding mix: the type ``attn_v`` and ``ffn_down`` get in every layer (what llama.cpp's
#: mixture gives its favoured layers)
EMBED_BUMP = {"Q4_K_M": T.Q6_K, "Q5_K_M": T.Q6_K, "Q4_K_S": T.Q5_K, "Q3_K_L": T.Q5_K, "Q3_K_M": T.Q5_K,
              "IQ4_XS": T.Q5_K, "IQ4_NL": T.Q5_K, "IQ3_M": T.Q4_K}
#: the embedding mix: token embeddings take the layers' base type, but no fewer than 4 bits
_EMBED_TOKEN_FLOOR = {T.Q3_K: T.Q4_K, T.Q2_K: T.Q4_K, T.IQ3_S: T.IQ4_XS, T.IQ3_XXS: T.IQ4_XS}


def default_mix(task: str | None) -> str:
    """``embedding`` for an embedding model; a reranker keeps llama.cpp's mixture (a Qwen3 reranker
    scores with its output head, and the embedding mix was measured on pooled vectors)."""
    return "llama" if task == "rerank" else "embedding"


def _embed_token_type(quant: str) -> T:
    base = BASE_TYPES[quant]
    return _EMBED_TOKEN_FLOOR.get(base, base)


def mix_overrides(quant: str, mix: str) -> dict[str, T]:
    """The ``tensor_types`` (regex over tensor names -> type, before llama.cpp's fallback for a row
    that does not divide the block) that make llama.cpp's quantizer write ``mix``."""
    if mix != "embedding" or quant in DIRECT:
        return {}
    out = {r"^token_embd\.weight$": _embed_token_type(quant)}
    if quant in EMBED_BUMP:
        out.update({r"\.attn_v\.weight$": EMBED_BUMP[quant], r"\.ffn_down\.weight$": EMBED_BUMP[quant]})
    return out


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple[int, ...]  # GGUF order: row length first
    type: T

    @property
    def n_bytes(self) -> int:
        block, size = gguf.GGML_QUANT_SIZES[self.type]
        n = 1
        for d in self.dims:
            n *= d
        return n // block * size


def _fit(t: T, row: int) -> T:
    while row % gguf.GGML_QUANT_SIZES[t][0]:
        t = _FALLBACK.get(t, T.F16)
    return t


def token_embd_type(quant: str) -> T:
    """What llama.cpp's quantizer gives the token embeddings of a tied model (the head's rule):
    gguf-embed keeps that type for them when it writes a separate head."""
    base = BASE_TYPES[quant]
    return base if base == T.Q8_0 else T.Q6_K


def head_types(quant: str, hidden: int, mix: str = "embedding") -> tuple[T, T]:
    """(output head, token embeddings) types for a decoder embedding file with a separate head.
    llama.cpp's quantizer takes explicit types as they are, so they must already fit the row."""
    return _fit(HEAD_TYPE, hidden), _fit(_token_type(quant, mix), hidden)


def _token_type(quant: str, mix: str) -> T:
    """The token embeddings' type under ``mix`` (before fitting the row)."""
    return _embed_token_type(quant) if mix == "embedding" else token_embd_type(quant)


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _layer_type(kind: str, i: int, n: int, quant: str, row: int, mix: str) -> T:
    base = BASE_TYPES[quant]
    if quant in DIRECT:
        return base
    if kind in ("attn_v", "ffn_down"):
        if mix == "embedding" and quant in EMBED_BUMP:
            base = EMBED_BUMP[quant]
        elif quant in ("Q4_K_M", "Q5_K_M") and _more_bits(i, n):
            base = T.Q6_K
        elif quant == "Q4_K_S" and (i < 4 if kind == "attn_v" else i < n // 8):
            base = T.Q5_K
    return _fit(base, row)


def _qwen3(entry: ModelEntry, quant: str, mix: str) -> list[TensorSpec]:
    s = entry.shape
    h, kv, hd = s.hidden, s.kv_heads or s.heads, s.head_dim or s.hidden // s.heads
    f32 = T.F32
    quantised = quant not in DIRECT
    head, embd = head_types(quant, h, mix) if quantised else (None, BASE_TYPES[quant])
    out = [TensorSpec("token_embd.weight", (h, s.vocab), embd)]
    for i in range(s.layers):
        p = f"blk.{i}."
        mats = [("attn_q", (h, s.heads * hd)), ("attn_k", (h, kv * hd)), ("attn_v", (h, kv * hd)),
                ("attn_output", (s.heads * hd, h)), ("ffn_gate", (h, s.ffn)), ("ffn_up", (h, s.ffn)),
                ("ffn_down", (s.ffn, h))]
        out += [TensorSpec(p + k + ".weight", d, _layer_type(k, i, s.layers, quant, d[0], mix)) for k, d in mats]
        out += [TensorSpec(p + "attn_norm.weight", (h,), f32), TensorSpec(p + "ffn_norm.weight", (h,), f32),
                TensorSpec(p + "attn_q_norm.weight", (hd,), f32), TensorSpec(p + "attn_k_norm.weight", (hd,), f32)]
    out.append(TensorSpec("output_norm.weight", (h,), f32))
    if quantised:
        out.append(TensorSpec("output.weight", (h, s.vocab), head))
    return out


def _bert(entry: ModelEntry, quant: str, mix: str) -> list[TensorSpec]:
    s = entry.shape
    h, f32 = s.hidden, T.F32
    quantised = quant not in DIRECT
    embd = _fit(_token_type(quant, mix), h) if quantised else BASE_TYPES[quant]
    out = [TensorSpec("token_embd.weight", (h, s.vocab), embd),
           TensorSpec("position_embd.weight", (h, s.max_positions), f32),
           TensorSpec("token_types.weight", (h, 2), f32),
           TensorSpec("token_embd_norm.weight", (h,), f32), TensorSpec("token_embd_norm.bias", (h,), f32)]
    for i in range(s.layers):
        p = f"blk.{i}."
        mats = [("attn_q", (h, h)), ("attn_k", (h, h)), ("attn_v", (h, h)), ("attn_output", (h, h)),
                ("ffn_up", (h, s.ffn)), ("ffn_down", (s.ffn, h))]
        for k, d in mats:
            out.append(TensorSpec(p + k + ".weight", d, _layer_type(k, i, s.layers, quant, d[0], mix)))
            out.append(TensorSpec(p + k + ".bias", (d[1],), f32))
        for norm in ("attn_output_norm", "layer_output_norm"):
            out += [TensorSpec(p + norm + ".weight", (h,), f32), TensorSpec(p + norm + ".bias", (h,), f32)]
    return out


def tensor_table(entry: ModelEntry, quant: str, mix: str | None = None) -> list[TensorSpec]:
    """Every tensor ``gguf-embed convert NAME --quant QUANT [--mix MIX]`` writes, with its type."""
    quant = quant.upper()
    if quant not in BASE_TYPES:
        raise ValueError(f"unknown quantisation type {quant}")
    if entry.shape is None:
        raise ValueError(f"{entry.name} has no shape table in models.toml")
    if getattr(entry, "task", "embed") != "embed":
        raise ValueError("rerank files carry their heads and segment tables: convert it and plan the file")
    mix = mix or default_mix(getattr(entry, "task", "embed"))
    if entry.architecture == "qwen3":
        return _qwen3(entry, quant, mix)
    if entry.architecture == "bert":
        return _bert(entry, quant, mix)
    raise ValueError(f"no tensor table for the {entry.architecture} architecture yet")

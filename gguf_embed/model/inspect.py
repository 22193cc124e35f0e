"""``gguf-embed inspect``: everything gguf-embed will do with a GGUF, and which of it the file said.

Read from the metadata and the tensor table only (no weights, no llama.cpp), so it is
instant on a 5 GB file; ``source`` names where each value came from: ``file``, ``family NAME``
(the models.toml family table, for files made by other tools), ``default`` or ``override``.
"""

from __future__ import annotations

from typing import Any

from .. import keys
from .gguf_file import GGUFFile
from .info import ModelInfo

__all__ = ["describe", "importance_matrix"]


def _eos(gguf: GGUFFile, info: ModelInfo) -> dict[str, Any] | None:
    """What ends every input, and whether gguf-embed appends it itself."""
    if not info.eos:
        return None
    meta = gguf.meta
    add_eos = meta.get("tokenizer.ggml.add_eos_token")
    eos_id = meta.get("tokenizer.ggml.eos_token_id")
    tokens = gguf.array("tokenizer.ggml.tokens") or []
    file_eos = tokens[eos_id] if isinstance(eos_id, int) and 0 <= eos_id < len(tokens) else None
    appended = not (add_eos is True and file_eos == info.eos)
    why = ("the file's tokenizer adds it" if not appended else
           f"appended by gguf-embed (the file's add_eos_token is {add_eos!r}, its EOS {file_eos!r})")
    return {"token": info.eos, "appended_by_gguf_embed": appended, "note": why,
            "source": info.sources.get("eos")}


def _head(gguf: GGUFFile, info: ModelInfo) -> dict[str, Any] | None:
    if info.task != "rerank":
        return None
    out = gguf.tensors.get("cls.output.weight")
    labels = gguf.meta.get(keys.arch_key(info.arch, "classifier.output_labels"))
    return {"rows": out.shape[0] if out is not None else 0, "pooler": "cls.weight" in gguf.tensors,
            "labels": labels if isinstance(labels, list) else None,
            "score": "P(yes) = sigmoid(l_yes - l_no)" if out is not None and out.shape[0] == 2 else "sigmoid(logit)"}


def importance_matrix(meta: dict) -> dict[str, Any] | None:
    """How the file was importance-weighted (the keys llama-quantize and gguf-embed write), or None."""
    if keys.QUANTIZE_IMATRIX_ENTRIES not in meta and keys.QUANTIZE_IMATRIX_FILE not in meta:
        return None
    return {"file": meta.get(keys.QUANTIZE_IMATRIX_FILE), "dataset": meta.get(keys.QUANTIZE_IMATRIX_DATASET),
            "entries": meta.get(keys.QUANTIZE_IMATRIX_ENTRIES), "chunks": meta.get(keys.QUANTIZE_IMATRIX_CHUNKS),
            "tokens": meta.get(keys.IMATRIX_TOKENS)}


def describe(gguf: GGUFFile, info: ModelInfo) -> dict[str, Any]:
    """A JSON-ready account of a model: family, task, pooling, prompts, normaliser, EOS, head, limits."""
    src = info.sources
    lo, hi = info.dimension_range
    rerank = info.rerank
    return {
        "path": str(info.path), "name": info.name, "architecture": info.arch, "family": info.family,
        "task": {"value": info.task, "source": src.get("task")},
        "pooling": {"value": info.pooling, "source": src.get("pooling")},
        "prompts": {"value": dict(info.prompts), "source": src.get("prompts")},
        "text_normalizer": {"value": info.text_normalizer, "source": src.get("text_normalizer")},
        "eos": _eos(gguf, info),
        "rerank_template": None if rerank is None else {
            "prefix": rerank.prefix, "body": rerank.body, "suffix": rerank.suffix,
            "default_instruction": rerank.default_instruction, "source": src.get("rerank_template")},
        "head": _head(gguf, info),
        "max_tokens": {"value": info.max_tokens, "source": src.get("max_tokens"), "trained_context": info.n_ctx_train},
        "dimensions": {"value": info.n_embd, "matryoshka": [lo, hi] if lo != hi else None,
                       "source": src.get("matryoshka_min")},
        "outputs": list(info.outputs),
        "quantization": info.file_type_name, "importance_matrix": importance_matrix(gguf.meta),
        "causal": info.causal, "layers": info.n_layer,
        "quant_choice": gguf.meta.get(keys.QUANT_CHOICE),  # why --quant auto wrote this type, if it did
        "quant_mix": gguf.meta.get(keys.QUANT_MIX),  # convert's tensor mixture (absent: not ours, or not quantised)
        "supplied_by_gguf_embed": sorted(k for k, v in src.items() if v.startswith("family")),
        "warnings": list(info.warnings),  # what may make this file's vectors wrong, one line each
    }

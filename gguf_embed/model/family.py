"""Which family a GGUF belongs to, from what llama.cpp's converter writes, and what the family fills in.

Files made by gguf-embed carry everything in ``gguf_embed.*`` keys; files made by llama.cpp's
own converter (the official Qwen GGUFs, Ollama's blobs, LM Studio's downloads) carry the
architecture, pooling, tokenizer, special tokens, ``add_eos_token``, rerank template and head,
but no query prompt and no text normaliser. ``recognise`` matches the file against the family
table of ``models.toml`` (``[families.*]``); ``ModelInfo.from_file`` then takes each value from
the file when it has one, else from the family, and records which.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from .. import keys
from ..registry import Family
from .gguf_file import GGUFFile

__all__ = ["facts", "recognise", "LOWERCASE_KEY"]

LOWERCASE_KEY = keys.LLAMA_LOWERCASE  # llama.cpp's converter, for BERT vocabularies


def _name(text: str) -> str:
    return re.sub(r"[\s_]+", "-", str(text).strip().lower())


def facts(gguf: GGUFFile) -> dict[str, Any]:
    """What a file says that families are told apart by."""
    meta = gguf.meta
    arch = str(meta.get(keys.ARCH, "?"))
    pooling_id = meta.get(keys.arch_key(arch, "pooling_type"))
    labels = meta.get(keys.arch_key(arch, "classifier.output_labels"))
    names = [meta.get("general.basename"), meta.get("general.name"), gguf.path.stem]
    return {
        "architecture": arch,
        "pooling": keys.POOLING_NAMES.get(pooling_id, "none") if isinstance(pooling_id, int) else "none",
        "tokenizer": meta.get("tokenizer.ggml.model"),
        "names": " ".join(_name(n) for n in names if n),
        "cls_labels": list(labels) if isinstance(labels, list) else [],
        "lowercase": meta.get(LOWERCASE_KEY),
        "head": "cls.output.weight" in gguf.tensors,
    }


def _holds(key: str, want: Any, have: dict[str, Any]) -> bool:
    if key == "pooling":
        return have["pooling"] in want
    if key == "names":
        return any(_name(n) in have["names"] for n in want)
    if key == "architecture" and isinstance(want, list):  # one family over several architectures
        return have[key] in want
    return have[key] == want


def _specificity(family: Family) -> tuple[int, bool, int]:
    """More conditions first; then a family that names the model; then the narrower architecture list."""
    archs = family.match.get("architecture")
    breadth = len(archs) if isinstance(archs, list) else 1 if archs else 1000
    return len(family.match), "names" in family.match, -breadth


def recognise(gguf: GGUFFile, families: Iterable[Family]) -> Family | None:
    """The most specific family whose every match condition holds for this file, or None
    (between equally specific ones, the first in the table)."""
    have = facts(gguf)
    best, best_key = None, None
    for family in families:
        if all(_holds(k, v, have) for k, v in family.match.items()):
            key = _specificity(family)
            if best_key is None or key > best_key:
                best, best_key = family, key
    return best

"""Text normalisation that llama.cpp's tokenizers leave out.

BERT's uncased tokenizers decompose text (NFD), drop combining marks and lowercase it
before WordPiece. llama.cpp's WPM tokenizer decomposes only what its tables cover (not
Hangul syllables, for one), so the runtime applies the full normalisation first; the
tokenizer then sees text it has nothing left to change in.
"""

from __future__ import annotations

import unicodedata

__all__ = ["NORMALIZERS", "normalizer_for_tokenizer_json", "apply"]

NORMALIZERS = ("none", "nfd_strip_lower", "nfd_strip", "lower")


def normalizer_for_tokenizer_json(tokenizer: dict) -> str:
    norm = tokenizer.get("normalizer") or {}
    steps = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm]
    for step in steps:
        if step.get("type") == "BertNormalizer":
            lower = bool(step.get("lowercase", True))
            strip = step.get("strip_accents")
            strip = lower if strip is None else bool(strip)
            if strip:
                return "nfd_strip_lower" if lower else "nfd_strip"
            return "lower" if lower else "none"
    return "none"


def _strip(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def apply(kind: str, text: str) -> str:
    if kind in ("nfd_strip_lower", "nfd_strip") and not text.isascii():
        text = _strip(text)
    if kind in ("nfd_strip_lower", "lower"):
        text = text.lower()
    return text

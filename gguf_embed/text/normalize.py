"""Text normalisation that llama.cpp's tokenizers leave out.

A Hugging Face ``tokenizer.json`` normalises text before splitting it: Qwen3 composes it
(NFC), BERT's uncased tokenizers decompose it, drop combining marks and lowercase it,
others use NFKC, lowercasing or a SentencePiece ``Precompiled`` character map. llama.cpp's
BPE tokenizer normalises nothing, and its WPM tokenizer decomposes only what its tables
cover, so text in another Unicode form (decomposed accents from macOS or PDFs,
Vietnamese, Hangul jamo) would get different token ids from the reference.

The converter reads the normaliser into ``gguf_embed.text_normalizer`` as a ``+``-joined
list of steps (``"nfc"``, ``"nfkc+lower"``, ``"nfd_strip_lower"``...) and the runtime
applies it before tokenising, for every architecture. ``precompiled`` is recorded but
left to llama.cpp: its UGM (SentencePiece Unigram) tokenizer applies the map stored in
``tokenizer.ggml.precompiled_charsmap`` itself, and applying an approximation of it
here as well would only risk a difference.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from ..errors import UnsupportedNormalizer

__all__ = ["NORMALIZERS", "STEPS", "normalizer_for_tokenizer_json", "parse", "apply", "UnsupportedNormalizer"]

#: The composite values written by earlier versions (BERT only); still valid.
NORMALIZERS = ("none", "nfd_strip_lower", "nfd_strip", "lower")
#: Every step a normaliser value may name.
STEPS = ("none", "nfc", "nfkc", "nfd", "nfkd", "lower", "strip_accents", "precompiled", "nfd_strip_lower", "nfd_strip")

_UNICODE_FORMS = {"NFC": "nfc", "NFKC": "nfkc", "NFD": "nfd", "NFKD": "nfkd"}
# whitespace rewriting that llama.cpp's SentencePiece-style tokenizers do themselves
_LEFT_TO_TOKENIZER = ("Replace", "Prepend", "Strip")


def _bert_step(step: dict) -> str:
    lower = bool(step.get("lowercase", True))
    strip = step.get("strip_accents")
    strip = lower if strip is None else bool(strip)
    if strip:
        return "nfd_strip_lower" if lower else "nfd_strip"
    return "lower" if lower else "none"


def _step_name(step: dict) -> str:
    kind = step.get("type")
    if kind in _UNICODE_FORMS:
        return _UNICODE_FORMS[kind]
    if kind == "Lowercase":
        return "lower"
    if kind == "StripAccents":
        return "strip_accents"
    if kind == "Precompiled":
        return "precompiled"
    if kind == "BertNormalizer":
        return _bert_step(step)
    if kind in _LEFT_TO_TOKENIZER:
        return "none"
    raise UnsupportedNormalizer(f"unsupported tokenizer normaliser {kind!r}")


def normalizer_for_tokenizer_json(tokenizer: dict) -> str:
    """The normaliser value for a parsed tokenizer.json (``"none"`` when it has none)."""
    norm = tokenizer.get("normalizer") or {}
    if not norm:
        return "none"
    steps = norm.get("normalizers", []) if norm.get("type") == "Sequence" else [norm]
    names = []
    for step in steps:
        if step.get("type") == "Sequence":
            inner = normalizer_for_tokenizer_json({"normalizer": step})
            names.extend(inner.split("+"))
        else:
            names.append(_step_name(step))
    names = [n for n in names if n != "none"]
    return "+".join(names) or "none"


@lru_cache(maxsize=64)
def parse(kind: str) -> tuple[str, ...]:
    """The steps of a normaliser value; raises UnsupportedNormalizer for unknown ones."""
    steps = tuple(s.strip() for s in (kind or "none").split("+") if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise UnsupportedNormalizer(f"unknown text normaliser step {unknown[0]!r} (known: {', '.join(STEPS)})")
    return tuple(s for s in steps if s not in ("none", "precompiled"))


def _strip_marks(text: str, categories: tuple[str, ...]) -> str:
    return "".join(c for c in text if unicodedata.category(c) not in categories)


# Hugging Face's StripAccents drops every combining mark; BertNormalizer only the nonspacing ones.
_ALL_MARKS = ("Mn", "Mc", "Me")
_NONSPACING = ("Mn",)


def _lower(text: str) -> str:
    # Hugging Face lowercases character by character; str.lower() also applies Unicode's
    # Final_Sigma rule (a word-final capital sigma becomes "ς"), which Hugging Face does not.
    return text.replace("\u03a3", "\u03c3").lower() if "\u03a3" in text else text.lower()


def _step(step: str, text: str) -> str:
    if step in ("nfc", "nfkc", "nfd", "nfkd"):
        return unicodedata.normalize(step.upper(), text)
    if step == "lower":
        return _lower(text)
    if step == "strip_accents":
        return text if text.isascii() else _strip_marks(text, _ALL_MARKS)
    # BERT's: decompose, drop nonspacing marks, then maybe lowercase
    if not text.isascii():
        text = _strip_marks(unicodedata.normalize("NFD", text), _NONSPACING)
    return _lower(text) if step == "nfd_strip_lower" else text


def apply(kind: str, text: str) -> str:
    for step in parse(kind):
        text = _step(step, text)
    return text

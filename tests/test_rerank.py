"""Rerankers: conversion, scores against transformers / sentence-transformers, llama.cpp's own RANK head."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import keys
from gguf_embed.cli import main
from gguf_embed.convert import convert_model
from gguf_embed.errors import ConversionError, InputTooLongError, InvalidInputError
from gguf_embed.registry import load_registry
from gguf_embed.reranker import Reranker

from tools.models.rerankers import DOCUMENTS, QUERY, qwen3_recipe_scores


@pytest.fixture(scope="module")
def recipe(tiny_reranker_src):
    return qwen3_recipe_scores(tiny_reranker_src, QUERY, DOCUMENTS)


# --- Qwen3-Reranker ------------------------------------------------------------------


def test_qwen3_gguf_follows_llama_cpp_conventions(qwen_reranker, tiny_reranker_src):
    from safetensors.numpy import load_file

    from gguf_embed.model.gguf_file import read_tensors

    model = qwen_reranker.session.model
    meta = model.meta()
    assert meta["qwen3.pooling_type"] == "4"  # RANK
    assert model.cls_labels() == ["yes", "no"]
    assert meta[keys.TASK] == "rerank"
    template = meta[keys.LLAMA_RERANK_TEMPLATE]
    assert "{query}" in template and "{document}" in template and "{instruction}" not in template
    tensors = read_tensors(qwen_reranker.session.info.path, "")
    lm_head = load_file(str(tiny_reranker_src / "model.safetensors"))["lm_head.weight"]
    # the real Qwen3 vocabulary's ids for "yes" and "no"
    np.testing.assert_array_equal(tensors["cls.output.weight"], lm_head[[9693, 2152]])
    assert "output.weight" not in tensors  # no LM head in the file


def test_qwen3_tied_head_rows_come_from_the_embeddings(tiny_reranker_src, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from gguf_embed.convert.hf import read_folder
    from gguf_embed.convert.rerank import rerank_refs
    from gguf_embed.convert.weights import iter_tensor_refs

    tied = tmp_path / "Qwen3-Reranker-tied"
    shutil.copytree(tiny_reranker_src, tied)
    weights = load_file(str(tied / "model.safetensors"))
    del weights["lm_head.weight"]
    save_file(weights, str(tied / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((tied / "config.json").read_text())
    (tied / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": True}))
    hf = read_folder(tied)
    body, heads = rerank_refs(hf, list(iter_tensor_refs(tied)))
    assert [h.name for h in heads] == ["cls.output.weight"]
    assert "model.embed_tokens.weight" in {r.name for r in body}  # still the input embeddings
    np.testing.assert_array_equal(heads[0].load(), weights["model.embed_tokens.weight"][[9693, 2152]])


def test_qwen3_sequence_classification_head_keeps_the_softmax(tiny_reranker_src, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from gguf_embed.convert.hf import read_folder
    from gguf_embed.convert.rerank import detect_task, rerank_refs
    from gguf_embed.convert.weights import iter_tensor_refs

    seq = tmp_path / "seq-cls"
    shutil.copytree(tiny_reranker_src, seq)
    weights = load_file(str(seq / "model.safetensors"))
    head = weights.pop("lm_head.weight")
    weights["score.weight"] = (head[9693] - head[2152])[None, :]
    save_file(weights, str(seq / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((seq / "config.json").read_text())
    (seq / "config.json").write_text(json.dumps({**cfg, "architectures": ["Qwen3ForSequenceClassification"]}))
    hf = read_folder(seq)
    assert detect_task(hf, None) == "rerank"
    body, heads = rerank_refs(hf, list(iter_tensor_refs(seq)))
    rows = heads[0].load()
    assert rows.shape == (2, head.shape[1]) and not rows[1].any()
    h = np.random.default_rng(0).normal(size=(5, head.shape[1]))
    e_yes, e_no = np.exp(h @ rows[0]), np.exp(h @ rows[1])  # llama.cpp's softmax over the two rows
    np.testing.assert_allclose(e_yes / (e_yes + e_no), 1 / (1 + np.exp(-(h @ (head[9693] - head[2152])))), rtol=1e-5)
    assert "score.weight" not in {r.name for r in body}


def test_qwen3_tokens_and_scores_match_the_transformers_recipe(qwen_reranker, recipe):
    probs, raws, ids, _ = recipe
    seqs = qwen_reranker.tokenize_pairs(QUERY, DOCUMENTS)
    for ours, theirs in zip(seqs, ids):
        assert ours.tolist() == theirs
    res = qwen_reranker.score(QUERY, DOCUMENTS)
    np.testing.assert_allclose(res.scores, probs, atol=1e-3)
    raw = qwen_reranker.score(QUERY, DOCUMENTS, raw_scores=True).scores
    np.testing.assert_allclose(raw, raws, atol=1e-3)
    ranked = qwen_reranker.rerank(QUERY, DOCUMENTS)
    assert [i for i, _ in ranked] == list(np.argsort(-np.array(probs), kind="stable"))
    assert ranked == sorted(ranked, key=lambda r: -r[1])
    assert len(qwen_reranker.rerank(QUERY, DOCUMENTS, top_n=3)) == 3


def test_qwen3_f16_within_5e3(tiny_reranker_gguf, recipe):
    with Reranker(tiny_reranker_gguf("F16")) as rr:
        scores = rr.score(QUERY, DOCUMENTS).scores
    np.testing.assert_allclose(scores, recipe[0], atol=5e-3)


def test_qwen3_instruction_matches_recipe(qwen_reranker, tiny_reranker_src):
    instr = "Given a question about botany, find passages that answer it"
    probs, _, ids, _ = qwen3_recipe_scores(tiny_reranker_src, QUERY, DOCUMENTS[:3], instruction=instr)
    assert [s.tolist() for s in qwen_reranker.tokenize_pairs(QUERY, DOCUMENTS[:3], instruction=instr)] == ids
    np.testing.assert_allclose(qwen_reranker.score(QUERY, DOCUMENTS[:3], instruction=instr).scores, probs, atol=1e-3)


def test_qwen3_scores_equal_llama_cpp_rank_pooling(qwen_reranker):
    from gguf_embed.engine import llama as _llama

    seqs = qwen_reranker.tokenize_pairs(QUERY, DOCUMENTS)
    theirs = _llama.rank_scores(qwen_reranker.session.model, seqs)
    assert theirs.shape == (len(DOCUMENTS), 2)
    np.testing.assert_allclose(qwen_reranker.score(QUERY, DOCUMENTS).scores, theirs[:, 0], atol=1e-4)
    np.testing.assert_allclose(theirs.sum(1), 1.0, atol=1e-5)  # softmax over (yes, no)


def test_qwen3_truncates_the_document_end_and_keeps_the_suffix(tiny_reranker_gguf, tiny_reranker_src):
    long_doc = " ".join(DOCUMENTS) * 4
    with Reranker(tiny_reranker_gguf("F32"), n_ctx=160, batch_tokens=64) as rr:
        assert rr.max_tokens == 160
        seqs = rr.tokenize_pairs(QUERY, [long_doc, DOCUMENTS[0]])
        probs, _, ids, _ = qwen3_recipe_scores(tiny_reranker_src, QUERY, [long_doc, DOCUMENTS[0]], max_length=160)
        assert [s.tolist() for s in seqs] == ids and len(seqs[0]) == 160
        np.testing.assert_allclose(rr.score(QUERY, [long_doc, DOCUMENTS[0]]).scores, probs, atol=1e-3)
        with pytest.raises(InputTooLongError, match="document 0 .* limit of 160"):
            rr.score(QUERY, [long_doc], truncate="error")
        start = rr.tokenize_pairs(QUERY, [long_doc], truncate="start")[0]
        assert len(start) == 160 and start[-8:].tolist() == seqs[0][-8:].tolist()
        with pytest.raises(InputTooLongError, match="query"):
            rr.score(long_doc * 3, ["short"])


def test_reranker_refuses_bad_input(qwen_reranker, cross_reranker):
    with pytest.raises(InvalidInputError, match="query"):
        qwen_reranker.rerank("", DOCUMENTS)
    with pytest.raises(InvalidInputError, match="document 1"):
        qwen_reranker.rerank(QUERY, ["ok", 3])
    with pytest.raises(InvalidInputError, match="top_n"):
        qwen_reranker.rerank(QUERY, DOCUMENTS, top_n=0)
    with pytest.raises(InvalidInputError, match="no instruction"):
        cross_reranker.rerank(QUERY, DOCUMENTS, instruction="x")
    assert qwen_reranker.rerank(QUERY, []) == []


def test_embedding_model_is_not_a_reranker(minilm_gguf):
    with pytest.raises(InvalidInputError, match="embedding model, not a reranker"):
        Reranker(minilm_gguf("F16"))


# --- BERT cross-encoder ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cross_encoder(cross_encoder_src):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(cross_encoder_src), device="cpu")


def test_cross_encoder_matches_sentence_transformers(cross_reranker, cross_encoder):
    import torch

    pairs = [(QUERY, d) for d in DOCUMENTS]
    probs = cross_encoder.predict(pairs)
    logits = cross_encoder.predict(pairs, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(cross_reranker.score(QUERY, DOCUMENTS).scores, probs, atol=1e-3)
    # llama.cpp's BERT runs GELU through a tanh approximation tabulated in F16 (Hugging Face: exact
    # erf); on this head (logits ~0.6-1.5) that moves the logits by up to ~1.4e-3
    np.testing.assert_allclose(cross_reranker.score(QUERY, DOCUMENTS, raw_scores=True).scores, logits, atol=2e-3)
    assert [i for i, _ in cross_reranker.rerank(QUERY, DOCUMENTS)] == list(np.argsort(-probs, kind="stable"))


def test_cross_encoder_segments_and_llama_cpp_rank_head(cross_reranker, cross_encoder_src):
    from transformers import AutoTokenizer

    from gguf_embed.engine import llama as _llama

    tok = AutoTokenizer.from_pretrained(str(cross_encoder_src))
    enc = tok(QUERY, DOCUMENTS[0])
    seq = cross_reranker.tokenize_pairs(QUERY, DOCUMENTS[:1])[0]
    offset = cross_reranker.type1_offset
    assert offset == 30522
    types = np.asarray(enc["token_type_ids"])
    np.testing.assert_array_equal(seq - offset * types, enc["input_ids"])
    # llama.cpp's own RANK head (pooler + tanh + classifier) on the same tokens
    seqs = cross_reranker.tokenize_pairs(QUERY, DOCUMENTS)
    theirs = _llama.rank_scores(cross_reranker.session.model, seqs)[:, 0]
    np.testing.assert_allclose(cross_reranker.score(QUERY, DOCUMENTS, raw_scores=True).scores, theirs, atol=1e-4)
    # without segment 1 the scores move: the extension is what makes them match
    unshifted = [np.where(np.arange(len(s)) >= len(s) - (types == 1).sum(), s - offset, s) for s in seqs[:1]]
    plain = _llama.rank_scores(cross_reranker.session.model, unshifted)[:, 0]
    assert abs(plain[0] - theirs[0]) > 1e-3


def test_cross_encoder_gguf_metadata(cross_reranker):
    from gguf_embed.model.gguf_file import read_tensors

    meta = cross_reranker.session.model.meta()
    assert meta["bert.pooling_type"] == "4" and meta[keys.TASK] == "rerank"
    assert cross_reranker.session.model.cls_labels() == ["LABEL_0"]
    head = read_tensors(cross_reranker.session.info.path, "cls.")
    assert set(head) == {"cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias"}
    assert cross_reranker.session.n_vocab == 2 * 30522  # the segment-1 copies


# --- registry, conversion refusals, CLI -------------------------------------------------


def test_registry_rerank_entries():
    reg = load_registry()
    for name in ("qwen3-reranker-0.6b", "qwen3-reranker-4b", "qwen3-reranker-8b", "ms-marco-minilm-l6-v2", "bge-reranker-v2-m3"):
        assert reg.get(name).task == "rerank"
    assert reg.get("all-minilm-l6-v2").task == "embed"


def test_task_rerank_on_an_embedding_folder_is_refused(minilm_src, tmp_path):
    with pytest.raises(ConversionError):
        convert_model(str(minilm_src), tmp_path / "x.gguf", "F32", task="rerank")  # no classifier head


def test_cli_rerank_jsonl_and_table(tmp_path, cross_encoder_gguf, cross_reranker):
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCUMENTS) + "\n")
    runner = CliRunner()
    res = runner.invoke(main, ["rerank", QUERY, str(docs), "-m", str(cross_encoder_gguf), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    expect = cross_reranker.rerank(QUERY, DOCUMENTS)
    assert [(r["index"], r["text"]) for r in rows] == [(i, DOCUMENTS[i]) for i, _ in expect]
    np.testing.assert_allclose([r["score"] for r in rows], [s for _, s in expect], atol=1e-6)
    jl = tmp_path / "docs.jsonl"
    jl.write_text("\n".join(json.dumps({"body": d}) for d in DOCUMENTS))
    res = runner.invoke(main, ["rerank", QUERY, str(jl), "-m", str(cross_encoder_gguf), "--text-field", "body",
                               "--top-n", "2", "--raw-scores", "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    raw = cross_reranker.rerank(QUERY, DOCUMENTS, top_n=2, raw_scores=True)
    assert [json.loads(line)["index"] for line in res.stdout.splitlines()] == [i for i, _ in raw]
    res = runner.invoke(main, ["rerank", QUERY, "-", "-m", str(cross_encoder_gguf), "--format", "table"],
                        input="\n".join(DOCUMENTS))
    assert res.exit_code == 0 and "rank" in res.stdout and DOCUMENTS[expect[0][0]][:30] in res.stdout


def test_cli_rerank_errors_are_one_line(tmp_path, minilm_gguf, cross_encoder_gguf):
    docs = tmp_path / "d.txt"
    docs.write_text("a\nb\n")
    runner = CliRunner()
    res = runner.invoke(main, ["rerank", "q", str(docs), "-m", str(minilm_gguf("F16"))])
    assert res.exit_code == 1 and "embedding model, not a reranker" in res.output and "Traceback" not in res.output
    jl = tmp_path / "d.jsonl"
    jl.write_text('{"x": 1}\n')
    res = runner.invoke(main, ["rerank", "q", str(jl), "-m", str(cross_encoder_gguf)])
    assert res.exit_code == 1 and "no string field 'text'" in res.output


@pytest.mark.quick
def test_pure_pieces():
    from gguf_embed.heads.rerank import RerankHead, sigmoid
    from gguf_embed.server.rerank import parse_rerank

    h = np.array([[1.0, 0.0], [0.0, 2.0]])
    yes_no = RerankHead(np.array([[1.0, 1.0], [0.0, 3.0]], np.float32))
    np.testing.assert_allclose(yes_no.raw(h), [1.0, -4.0])
    np.testing.assert_allclose(yes_no.scores(h), sigmoid(np.array([1.0, -4.0])))
    e = np.exp([[1.0, 0.0], [2.0, 6.0]])  # softmax([l_yes, l_no])[0] equals the sigmoid of the difference
    np.testing.assert_allclose(yes_no.scores(h), e[:, 0] / e.sum(1))
    req = parse_rerank(b'{"query": "q", "documents": ["a", {"text": "b"}], "top_n": 1}', shape="v1", max_documents=8)
    assert req.documents == ["a", "b"] and req.return_documents and req.top_n == 1 and req.truncate is None
    tei = parse_rerank(b'{"query": "q", "texts": ["a"], "truncate": true, "truncation_direction": "Left"}',
                       shape="v1", max_documents=8)
    assert tei.shape == "tei" and tei.truncate == "start" and not tei.return_documents

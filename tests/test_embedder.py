"""Runtime: numpy pooling over llama.cpp hidden states, against sentence-transformers fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gguf_embed import Embedder, InputTooLongError, InvalidInputError
from gguf_embed.convert import convert_model
from tools.texts import VARIED_TEXTS

from .helpers import cos

TASK = "Given a question about science, find the paragraph that explains it"


def long_text(n_words: int) -> str:
    words = "retrieval embedding vector search local model quantised 向量 检索 def return".split()
    return " ".join(words[i % len(words)] for i in range(n_words))


def st_raw(st, ids: list[int]) -> np.ndarray:
    """sentence-transformers' vector for exact token ids (its own modules, fp32)."""
    ids_t = torch.tensor([ids])
    feats = {"input_ids": ids_t, "attention_mask": torch.ones_like(ids_t)}
    if "token_type_ids" in st.tokenizer.model_input_names:
        feats["token_type_ids"] = torch.zeros_like(ids_t)
    with torch.no_grad():
        return st.forward(feats)["sentence_embedding"][0].numpy()




def near_max_text(st) -> str:
    """The longest long_text() that still fits the model's token limit."""
    lo, hi = 1, 4000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(st.tokenizer(long_text(mid))["input_ids"]) <= st.max_seq_length:
            lo = mid
        else:
            hi = mid - 1
    return long_text(lo)


def varied(st) -> list[str]:
    return VARIED_TEXTS + [near_max_text(st)]


def test_minilm_every_text(minilm_embedder, st_minilm):
    texts = varied(st_minilm)
    ref = st_minilm.encode(texts)
    got = minilm_embedder.embed(texts)
    assert got.embeddings.dtype == np.float32 and got.embeddings.shape == (len(texts), 384)
    assert cos(got.embeddings, ref).min() >= 0.9999
    assert list(got.token_counts) == [len(st_minilm.tokenizer(t)["input_ids"]) for t in texts]
    assert got.token_counts[-1] >= st_minilm.max_seq_length - 6


@pytest.mark.parametrize("quant", ["F32", "F16"])
def test_qwen3_documents_queries_instructions(tiny_qwen_gguf, st_tiny_qwen, quant):
    texts = varied(st_tiny_qwen)
    with Embedder(tiny_qwen_gguf(quant)) as emb:
        docs = emb.embed(texts).embeddings
        # the prompt pushes the near-limit text over it: cut the end, as sentence-transformers does
        queries = emb.embed(texts, input_type="query", truncate="end").embeddings
        custom = emb.embed(texts, instruction=TASK, truncate="end").embeddings
    assert cos(docs, st_tiny_qwen.encode(texts)).min() >= 0.9999
    assert cos(queries, st_tiny_qwen.encode(texts, prompt_name="query")).min() >= 0.9999
    assert cos(custom, st_tiny_qwen.encode(texts, prompt=f"Instruct: {TASK}\nQuery:")).min() >= 0.9999


def test_qwen3_appends_endoftext(qwen_embedder, st_tiny_qwen):
    ids = qwen_embedder.tokenize(["hello world"])[0]
    assert ids[-1] == st_tiny_qwen.tokenizer.convert_tokens_to_ids("<|endoftext|>")


@pytest.mark.parametrize("which", ["minilm_embedder", "qwen_embedder"])
def test_batch_invariance(request, which):
    emb = request.getfixturevalue(which)
    rng = np.random.default_rng(0)
    texts = [VARIED_TEXTS[i % len(VARIED_TEXTS)] for i in range(40)]
    texts += [long_text(int(n)) for n in rng.integers(1, 120, 24)]
    rng.shuffle(texts)
    assert len(texts) == 64
    together = emb.embed(texts, input_type="query").embeddings
    alone = np.stack([emb.embed([t], input_type="query").embeddings[0] for t in texts])
    assert cos(together, alone).min() >= 0.99999


def test_long_qwen3_input_split_across_batches(tiny_qwen_src, st_tiny_qwen, tmp_path):
    path = convert_model(str(tiny_qwen_src), tmp_path / "long.gguf", "F32", max_tokens=4096).path
    text = long_text(900)
    n_tokens = len(st_tiny_qwen.tokenizer(text)["input_ids"])
    assert n_tokens > 3 * 256
    with Embedder(path, batch_tokens=256, n_ctx=4096) as emb:
        got = emb.embed([text, "short one"])
    assert got.token_counts[0] == n_tokens
    ref = st_raw(st_tiny_qwen, st_tiny_qwen.tokenizer(text)["input_ids"])
    assert cos(got.embeddings[0], ref)[0] >= 0.9999


def test_dimensions_cut_and_renormalise(qwen_embedder):
    full = qwen_embedder.embed(VARIED_TEXTS[:8]).embeddings
    for k in (16, 33, 64):
        cut = qwen_embedder.embed(VARIED_TEXTS[:8], dimensions=k).embeddings
        expect = full[:, :k] / np.linalg.norm(full[:, :k], axis=1, keepdims=True)
        assert cut.shape == (8, k)
        np.testing.assert_allclose(cut, expect, atol=1e-6)
    for bad in (15, 65, 0, -1, True, 3.5):
        with pytest.raises(InvalidInputError, match="dimensions must be between 16 and 64"):
            qwen_embedder.embed(["x"], dimensions=bad)


def test_dimensions_on_non_matryoshka_model(minilm_embedder):
    assert minilm_embedder.embed(["x"], dimensions=384).embeddings.shape == (1, 384)
    with pytest.raises(InvalidInputError, match="not Matryoshka-trained; its only dimension is 384"):
        minilm_embedder.embed(["x"], dimensions=128)


def test_no_normalize_gives_raw_pooled_vector(minilm_embedder, qwen_embedder, st_minilm, st_tiny_qwen):
    for emb, st in ((minilm_embedder, st_minilm), (qwen_embedder, st_tiny_qwen)):
        texts = VARIED_TEXTS[:6]
        raw = emb.embed(texts, normalize=False).embeddings
        ref = np.stack([st_raw_unnormalised(st, st.tokenizer(t)["input_ids"]) for t in texts])
        np.testing.assert_allclose(np.linalg.norm(raw, axis=1), np.linalg.norm(ref, axis=1), rtol=2e-3)
        assert cos(raw, ref).min() >= 0.9999


def st_raw_unnormalised(st, ids):
    from sentence_transformers import SentenceTransformer

    pooled = SentenceTransformer(modules=[st[0], st[1]], device="cpu")
    return st_raw(pooled, ids)


def test_truncation_policies(minilm_embedder, qwen_embedder, st_minilm, st_tiny_qwen):
    for emb, st in ((minilm_embedder, st_minilm), (qwen_embedder, st_tiny_qwen)):
        text = long_text(1500)
        full_ids = st.tokenizer(text)["input_ids"]
        limit = emb.max_tokens
        assert len(full_ids) > limit
        with pytest.raises(InputTooLongError) as err:
            emb.embed(["ok", text])
        assert f"input 1 has {len(full_ids)} tokens" in str(err.value) and f"limit of {limit}" in str(err.value)
        end = emb.embed([text], truncate="end")
        assert end.token_counts[0] == limit
        # sentence-transformers truncates the end too, keeping the special tokens
        assert cos(end.embeddings[0], st.encode([text])[0])[0] >= 0.9999
        n_pre = 1 if full_ids[0] == st.tokenizer.cls_token_id else 0
        n_suf = 1
        body = full_ids[n_pre:-n_suf]
        kept = full_ids[:n_pre] + body[len(body) - (limit - n_pre - n_suf):] + full_ids[-n_suf:]
        start = emb.embed([text], truncate="start")
        assert emb.tokenize([text], truncate="start")[0].tolist() == kept
        ref = st_raw(st, kept)
        assert cos(start.embeddings[0], ref / np.linalg.norm(ref))[0] >= 0.9999


def test_start_truncation_keeps_the_query_prompt(qwen_embedder):
    text = long_text(1500)
    ids = qwen_embedder.tokenize([text], input_type="query", truncate="start")[0]
    prompt = qwen_embedder.session.model.tokenize(qwen_embedder.info.prompts["query"], add_special=False)
    assert len(ids) == qwen_embedder.max_tokens
    assert ids[: len(prompt) - 1].tolist() == prompt[: len(prompt) - 1].tolist()
    assert ids[-1] == qwen_embedder.tokenize(["x"])[0][-1]


def test_token_id_input_matches_text(qwen_embedder, minilm_embedder):
    for emb in (qwen_embedder, minilm_embedder):
        texts = VARIED_TEXTS[:5]
        framed = emb.tokenize(texts)
        bare = [emb.session.model.tokenize(t, add_special=False).tolist() for t in (texts if emb is qwen_embedder else
                [t.lower() for t in texts])]
        a = emb.embed(texts).embeddings
        np.testing.assert_allclose(emb.embed_tokens([f.tolist() for f in framed]).embeddings, a, atol=1e-5)
        np.testing.assert_allclose(emb.embed_tokens(bare).embeddings, a, atol=1e-5)
        with pytest.raises(InvalidInputError, match="outside"):
            emb.embed_tokens([[emb.n_vocab + 5]])


def test_input_errors(minilm_embedder, qwen_embedder):
    with pytest.raises(InvalidInputError, match="input_type"):
        qwen_embedder.embed(["x"], input_type="passage")
    with pytest.raises(InvalidInputError, match="takes no task instruction"):
        minilm_embedder.embed(["x"], instruction="find things")
    with pytest.raises(InvalidInputError, match="truncate"):
        qwen_embedder.embed(["x"], truncate="middle")
    with pytest.raises(InvalidInputError, match="not a single string"):
        qwen_embedder.embed("x")
    assert qwen_embedder.embed([]).embeddings.shape == (0, 64)


def test_lone_surrogates_are_named_in_the_python_api(minilm_embedder, cross_reranker):
    from gguf_embed.errors import InvalidTextError

    with pytest.raises(InvalidTextError, match="input 1 has a lone UTF-16 surrogate"):
        minilm_embedder.embed(["fine", "bad \ud800 text"])
    with pytest.raises(InvalidTextError, match="document 0 has a lone UTF-16 surrogate"):
        cross_reranker.score("query", ["\udfff"])
    with pytest.raises(InvalidTextError, match="the query has a lone UTF-16 surrogate"):
        cross_reranker.score("q \ud800", ["doc"])


@pytest.mark.parametrize("which", ["minilm_embedder", "qwen_embedder"])
def test_token_rows_are_what_pooling_reads(request, which, st_minilm):
    """Every token's hidden state, per text, from one packed run: mean/last pooling over them gives
    the pooled vector (on the Qwen3 fast path too, which outputs only last tokens itself); for
    MiniLM they are sentence-transformers' token embeddings."""
    emb = request.getfixturevalue(which)
    texts = ["hello world", "a longer sentence about local retrieval " * 6, "x", VARIED_TEXTS[3]]
    seqs = emb.tokenize(texts)
    rows = emb.session.token_rows(seqs)
    pooled = emb.session.rows(seqs)
    assert [r.shape for r in rows] == [(len(s), emb.session.n_embd) for s in seqs]
    got = np.stack([r.mean(0) if emb.info.pooling == "mean" else r[-1] for r in rows])
    assert cos(got, pooled).min() >= 0.99999
    if which == "minilm_embedder":
        ids = torch.tensor([seqs[1].tolist()])
        feats = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        with torch.no_grad():
            ref = st_minilm[0].forward(feats)["token_embeddings"][0].numpy()
        assert cos(rows[1], ref).min() >= 0.9999

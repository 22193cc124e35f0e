"""The last-token fast path (no LM head) against the plain all-token path, its self-check and fallback."""

from __future__ import annotations

import numpy as np
import pytest

from gguf_embed import Embedder
from gguf_embed.engine import llama as _llama
from gguf_embed.convert import convert_model
from gguf_embed.engine.settings import FAST_PATH_ENV
from tools.texts import VARIED_TEXTS

from .test_embedder import cos, long_text, st_raw


@pytest.fixture(scope="module")
def plain_qwen(tiny_qwen_gguf):
    with Embedder(tiny_qwen_gguf("F32"), fast_path=False) as emb:
        yield emb


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = [VARIED_TEXTS[i % len(VARIED_TEXTS)] for i in range(n // 2)]
    texts += [long_text(int(k)) for k in rng.integers(1, 150, n - len(texts))]
    rng.shuffle(texts)
    return texts


def test_fast_path_is_the_default_for_last_token_decoders(qwen_embedder, minilm_embedder, plain_qwen):
    assert qwen_embedder.fast_path and qwen_embedder.session.runner.fast_path_note == ""
    assert not minilm_embedder.fast_path  # encoder models keep the all-token path
    assert not plain_qwen.fast_path


def test_fast_path_equals_plain_path_across_batch_compositions(qwen_embedder, plain_qwen):
    texts = mixed_texts(40)
    for kwargs in ({}, {"input_type": "query", "normalize": False}):
        fast = qwen_embedder.embed(texts, **kwargs).embeddings
        plain = plain_qwen.embed(texts, **kwargs).embeddings
        assert cos(fast, plain).min() >= 0.99999
        if not kwargs.get("normalize", True):
            np.testing.assert_allclose(np.linalg.norm(fast, axis=1), np.linalg.norm(plain, axis=1), rtol=1e-5)
    # the same texts alone, and in batches of other sizes, give the same vectors
    alone = np.stack([qwen_embedder.embed([t]).embeddings[0] for t in texts[:8]])
    assert cos(alone, qwen_embedder.embed(texts).embeddings[:8]).min() >= 0.99999


def test_sequences_split_over_several_batches(tiny_qwen_src, tmp_path, st_tiny_qwen):
    path = convert_model(str(tiny_qwen_src), tmp_path / "long.gguf", "F32", max_tokens=2048).path
    texts = [long_text(200), "short", long_text(120), long_text(40), "x"]
    n_long = len(st_tiny_qwen.tokenizer(texts[0])["input_ids"])
    assert n_long > 2 * 64
    with Embedder(path, batch_tokens=64, n_ctx=2048) as fast, \
            Embedder(path, batch_tokens=64, n_ctx=2048, fast_path=False) as plain:
        assert fast.fast_path and not plain.fast_path
        a, b = fast.embed(texts).embeddings, plain.embed(texts).embeddings
    assert cos(a, b).min() >= 0.99999
    ref = np.stack([st_raw(st_tiny_qwen, st_tiny_qwen.tokenizer(t)["input_ids"]) for t in texts])  # untruncated
    assert cos(a, ref).min() >= 0.9999


def test_one_token_inputs(qwen_embedder, plain_qwen):
    eot = int(qwen_embedder.tokenize(["x"])[0][-1])
    ids = [[eot], [5], [5, 6], [eot, eot]]
    fast = qwen_embedder.embed_tokens(ids)
    plain = plain_qwen.embed_tokens(ids)
    assert fast.token_counts.tolist() == [1, 2, 3, 2]
    assert cos(fast.embeddings, plain.embeddings).min() >= 0.99999


def test_switched_off_by_environment(tiny_qwen_gguf, monkeypatch):
    monkeypatch.setenv(FAST_PATH_ENV, "0")
    with Embedder(tiny_qwen_gguf("F32")) as emb:
        assert not emb.fast_path
    with Embedder(tiny_qwen_gguf("F32"), fast_path=True) as emb:  # an explicit argument wins
        assert emb.fast_path


def test_falls_back_when_the_capture_never_fires(tiny_qwen_gguf, plain_qwen, monkeypatch, capsys):
    # a graph without the node the fast path cuts at: the callback never sees it
    monkeypatch.setattr(_llama, "CAPTURE_NODE", b"no_such_node")
    with Embedder(tiny_qwen_gguf("F32"), verbose=True) as emb:
        assert not emb.fast_path
        assert "captured 0 rows" in emb.session.runner.fast_path_note
        texts = VARIED_TEXTS[:10]
        assert cos(emb.embed(texts).embeddings, plain_qwen.embed(texts).embeddings).min() >= 0.99999
    assert "fast path off" in capsys.readouterr().err


def test_falls_back_when_the_probe_disagrees(tiny_qwen_gguf, monkeypatch):
    real = _llama.Context.run_all_rows

    def skewed(self, *args):
        rows = real(self, *args)
        rows[:, : rows.shape[1] // 2] *= -1
        return rows

    monkeypatch.setattr(_llama.Context, "run_all_rows", skewed)
    with Embedder(tiny_qwen_gguf("F32")) as emb:
        assert not emb.fast_path and "differ between the two paths" in emb.session.runner.fast_path_note
        assert emb.embed(["still embeds"]).embeddings.shape == (1, 64)


def test_separate_head_file_embeds_the_same_in_stock_llama_cpp(tiny_qwen_gguf):
    """A quantised Qwen3 file carries its own Q2_K-class head; llama.cpp's own pooling still gives
    the vectors gguf-embed's fast path gives."""
    import gguf

    from .test_convert import llama_embed

    path = tiny_qwen_gguf("Q8_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert types["output.weight"] == gguf.GGMLQuantizationType.Q4_0  # Q2_K falls back for 64-wide rows
    texts = VARIED_TEXTS[:12]
    with Embedder(path) as emb:
        assert emb.fast_path
        ours = emb.embed(texts).embeddings
    assert cos(ours, llama_embed(path, texts)).min() >= 0.99999

"""llama.cpp's host output buffer: no logits for an embeddings context in the build ``make install``
makes (patches/llama.cpp/no-logits-for-embeddings-contexts.patch), and on a stock build the reservation
said by ``plan`` and ``inspect`` and kept to what the input needs.

The model: a 2-layer, 64-wide random XLM-R on the real 250,002-piece vocabulary with 8194 positions, as
bge-m3 has (a 64 MiB file), where one 8192-token batch of logits is 7.6 GiB.
"""

from __future__ import annotations

import numpy as np
import pytest

from gguf_embed.convert import convert_model
from gguf_embed.engine import llama, planning
from gguf_embed.engine.session import measure_buffers
from gguf_embed.engine.settings import RuntimeSettings
from tools.models.multilingual import XLMR_VOCAB, build_tiny_xlmr, xlmr_tokenizer_json
from tools.peak_rss import gguf_embed_peak_rss
from tools.texts import text_of_tokens

pytestmark = pytest.mark.skipif(not XLMR_VOCAB.exists(), reason="needs llama.cpp's XLM-R vocabulary (make install-test)")
MiB = 2**20


@pytest.fixture(scope="module")
def long_xlmr(tmp_path_factory):
    src = build_tiny_xlmr(tmp_path_factory.mktemp("long-xlmr") / "tiny-bge-m3", xlmr_tokenizer_json(),
                          hidden=64, max_tokens=8192)
    return convert_model(str(src), src.parent / "tiny-bge-m3-F32.gguf", "F32").path


def test_this_build_reserves_no_logits_for_embeddings_contexts():
    assert not llama.embeddings_reserve_logits(), (
        "llama-cpp-python here is a stock build: make install builds it from the sdist with patches/llama.cpp applied")


def test_an_embeddings_context_keeps_no_logits_and_the_plan_says_so(long_xlmr):
    import llama_cpp as ll

    from gguf_embed import Embedder

    shape = planning.read_shape(long_xlmr)
    p = planning.estimate(shape)
    m = measure_buffers(long_xlmr, RuntimeSettings.of(**p.settings()))
    output = sum(v for k, v in m["reported"].items() if k.startswith("output:"))
    assert abs(p.output_at_start - output) <= 0.01 * MiB, (p.output_at_start, m["reported"])
    assert p.output == 8192 * shape.info.n_embd * 4  # a full batch: 8192 embeddings, 2 MiB
    with Embedder(long_xlmr) as emb:
        emb.embed([("river " * 8000).strip()])  # one batch of 8000 outputs
        assert not ll.llama_get_logits(emb.session.runner.ctx.ptr)  # no logits buffer at all
    stock = planning.estimate(shape, reserve_logits=True)  # one input at the limit, at worst: 7.6 GiB more
    assert stock.output == 8192 * (shape.n_vocab + shape.info.n_embd) * 4 > 7 * 2**30


def test_a_stock_build_packs_short_texts_to_the_default_batch(long_xlmr, monkeypatch):
    from gguf_embed import Embedder

    texts = [("word " * 300).strip()] * 3 + [("mot " * 7000).strip()]
    with Embedder(long_xlmr) as emb:
        assert emb.session.runner.batch_tokens == emb.session.batch_tokens == 8192  # no logits: a whole batch
        want = emb.embed(texts).embeddings
    monkeypatch.setattr(llama, "embeddings_reserve_logits", lambda: True)
    with Embedder(long_xlmr) as emb:
        runner = emb.session.runner
        assert runner.batch_tokens == 512
        assert [len(g) for g in runner.groups(np.array([300, 300, 300, 7000]))] == [1, 1, 1, 1]
        got = emb.embed(texts).embeddings
    cos = (want * got).sum(1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.99999


@pytest.mark.parametrize("n_tokens,limit", [(512, 400 * MiB), (8192, None)])
def test_peak_memory_of_one_long_document(long_xlmr, tmp_path, n_tokens, limit):
    src, out = tmp_path / "doc.txt", tmp_path / "out.npy"
    src.write_text(text_of_tokens(long_xlmr, n_tokens) + "\n")
    peak, _ = gguf_embed_peak_rss("encode", src, "-m", long_xlmr, "-o", out, "--no-cache")
    vec = np.load(out)
    limit = limit or long_xlmr.stat().st_size + 2**30  # the file + 1 GiB for 8192 tokens
    assert peak <= limit, f"peak RSS {peak / MiB:.0f} MiB > {limit / MiB:.0f} MiB"
    assert vec.shape[0] == 1 and np.isfinite(vec).all()

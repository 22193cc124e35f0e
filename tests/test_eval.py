"""gguf-embed eval: statistics, agreement with a reference, the Lee (2005) benchmark; the MTEB encoder."""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed.quality import evaluate
from gguf_embed.quality import texts as multilingual
from gguf_embed.cli import main
from gguf_embed.mteb import MTEBEncoder

needs_gensim = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("gensim") is None, reason="gensim (the eval extra) is not installed"
)


@pytest.mark.quick
def test_statistics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    b = a + rng.normal(size=300)
    ties = np.round(b, 1)  # many ties, like averaged human ratings
    assert evaluate.pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-12)
    assert evaluate.spearman(a, ties) == pytest.approx(stats.spearmanr(a, ties)[0], abs=1e-12)
    np.testing.assert_allclose(evaluate.rankdata(ties), stats.rankdata(ties))


@pytest.mark.quick
def test_compare():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(40, 16))
    same = evaluate.compare(ref * 3, ref)
    assert same.cos_min == pytest.approx(1.0) and same.spearman == pytest.approx(1.0)
    noisy = ref.copy()
    noisy[7] += rng.normal(size=16) * 5
    a = evaluate.compare(noisy, ref)
    assert a.worst_index == 7 and a.cos_min < a.cos_p1 <= a.cos_mean < 1 and a.spearman < 1
    with pytest.raises(evaluate.EvalError):
        evaluate.compare(ref[:, :8], ref)


@needs_gensim
def test_lee_data():
    docs, human = evaluate.lee_data()
    assert len(docs) == 50 and human.shape == (1225,)
    assert 0 <= human.min() and human.max() <= 1


@pytest.fixture(scope="module")
def st_lee(st_minilm):
    return evaluate.lee_benchmark(lambda t: st_minilm.encode(list(t), convert_to_numpy=True, normalize_embeddings=True))


@needs_gensim
@pytest.mark.parametrize("quant, tol", [("F16", 0.005), ("Q8_0", 0.01)])
def test_lee_on_minilm_matches_sentence_transformers(minilm_gguf, st_lee, quant, tol):
    result = CliRunner().invoke(main, ["eval", str(minilm_gguf(quant)), "--task", "lee", "--json"])
    assert result.exit_code == 0, result.output
    lee = json.loads(result.stdout)["lee"]
    assert lee["pairs"] == 1225 and lee["documents"] == 50
    assert abs(lee["spearman"] - st_lee.spearman) <= tol, (lee, st_lee)
    assert abs(lee["pearson"] - st_lee.pearson) <= 2 * tol
    assert st_lee.spearman > 0.4  # a real signal, not noise


def test_eval_against_hf_and_gguf_references(minilm_gguf, minilm_src, st_minilm, tmp_path):
    from gguf_embed import Embedder

    runner = CliRunner()
    texts = multilingual.texts()[::4]
    subset = tmp_path / "subset.txt"
    subset.write_text("\n".join(texts) + "\n", encoding="utf-8")
    hf = runner.invoke(main, ["eval", str(minilm_gguf("Q8_0")), "--reference", str(minilm_src), "--texts", str(subset),
                              "--json"])
    assert hf.exit_code == 0, hf.output
    ref = json.loads(hf.stdout)["reference"]
    with Embedder(minilm_gguf("Q8_0")) as emb:
        expect = evaluate.compare(emb.embed(texts, truncate="end").embeddings,
                                  st_minilm.encode(texts, convert_to_numpy=True, normalize_embeddings=True))
    assert ref["n_texts"] == len(texts) and ref["worst_index"] == expect.worst_index
    for key in ("cos_min", "cos_p1", "cos_mean", "spearman"):
        assert ref[key] == pytest.approx(getattr(expect, key), abs=1e-6)
    assert ref["cos_min"] <= ref["cos_p1"] <= ref["cos_mean"] <= 1.0001
    assert ref["cos_mean"] > 0.99 and ref["spearman"] > 0.99
    assert json.loads(hf.stdout)["tensor_mix"] == "embedding"  # what convert wrote, as the file records it
    gg = runner.invoke(main, ["eval", str(minilm_gguf("Q8_0")), "--reference", str(minilm_gguf("F16"))])
    assert gg.exit_code == 0, gg.output
    assert "cos min" in gg.stdout and "built-in multilingual set" in gg.stdout
    assert "vs reference" in gg.stdout and f" {len(multilingual.texts())} " in gg.stdout
    assert "(Q8_0, embedding mix" in " ".join(gg.stdout.split())  # the title may wrap
    none = runner.invoke(main, ["eval", str(minilm_gguf("F16"))])
    assert none.exit_code != 0 and "--reference and/or --task lee" in none.output
    short = tmp_path / "s.txt"
    short.write_text("only one\n", encoding="utf-8")
    bad = runner.invoke(main, ["eval", str(minilm_gguf("F16")), "--reference", str(minilm_src), "--texts", str(short)])
    assert bad.exit_code != 0 and "at least 3 texts" in bad.output and "Traceback" not in bad.output


# --- MTEB encoder -----------------------------------------------------------------------


class _Prompt:  # stands in for mteb's PromptType enum
    def __init__(self, value):
        self.value = value


def test_mteb_encoder_interface(tiny_qwen_gguf, qwen_embedder):
    enc = MTEBEncoder(tiny_qwen_gguf("F32"), embedder=qwen_embedder,
                      instructions={"SciFact": "Given a claim, find documents that support it"})
    params = inspect.signature(enc.encode).parameters
    for name in ("task_metadata", "hf_split", "hf_subset", "prompt_type"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    loader = [{"text": ["what is a vector?", "cats"]}, {"text": ["dogs"]}]  # a DataLoader of BatchedInput
    task = SimpleNamespace(name="SciFact", type="Retrieval")
    q = enc.encode(loader, task_metadata=task, hf_split="test", hf_subset="default", prompt_type=_Prompt("query"))
    d = enc.encode(loader, task_metadata=task, hf_split="test", hf_subset="default", prompt_type=_Prompt("document"))
    plain = enc.encode(loader, task_metadata=SimpleNamespace(name="STS12", type="STS"), hf_split="test",
                       hf_subset="default", prompt_type="query")
    texts = ["what is a vector?", "cats", "dogs"]
    np.testing.assert_allclose(
        q, qwen_embedder.embed(texts, input_type="query", instruction="Given a claim, find documents that support it").embeddings,
        atol=1e-6)
    np.testing.assert_allclose(d, qwen_embedder.embed(texts, input_type="document").embeddings, atol=1e-6)
    np.testing.assert_allclose(plain, qwen_embedder.embed(texts, input_type="query").embeddings, atol=1e-6)
    sim = enc.similarity(q, d)
    assert sim.shape == (3, 3)
    np.testing.assert_allclose(enc.similarity_pairwise(q, d), np.diag(sim), atol=1e-6)
    assert enc.encode([], task_metadata=task, hf_split="t", hf_subset="d").shape == (0, qwen_embedder.dimensions)

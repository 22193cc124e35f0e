"""bge-m3's three outputs from one pass (dense, sparse lexical weights, ColBERT multi-vectors) and
token-level output, against FlagEmbedding's equations reimplemented here in torch on the same tiny
random model (a tiny XLMRobertaModel around the real XLM-R vocabulary plus random ``sparse_linear``
and ``colbert_linear`` layers saved as BAAI/bge-m3 saves them).

The reference follows FlagEmbedding (github.com/FlagOpen/FlagEmbedding):
``FlagEmbedding/finetune/embedder/encoder_only/m3/modeling.py`` -- ``_dense_embedding`` (CLS row),
``_sparse_embedding`` (``torch.relu(self.sparse_linear(hidden_state))``), ``_colbert_embedding``
(``self.colbert_linear(last_hidden_state[:, 1:])`` times ``mask[:, 1:]``), ``_encode`` (dense and
ColBERT vectors ``F.normalize``d when ``normalize_embeddings``); and
``FlagEmbedding/inference/embedder/encoder_only/m3.py`` -- ``_process_token_weights`` (the largest
weight per id, ids of cls/eos/pad/unk dropped, only ``w > 0``), ``_process_colbert_vecs``
(``colbert_vecs[:tokens_num - 1]``), ``compute_lexical_matching_score`` (sum of ``weight *
lw2[token]`` over shared tokens) and ``colbert_score`` (``einsum('in,jn->ij')``, max over the
document, sum divided by the number of query vectors).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gguf_embed import Embedder
from gguf_embed import choices, keys
from gguf_embed.convert import convert_model
from gguf_embed.errors import InvalidInputError
from gguf_embed.heads import multivector as mv
from gguf_embed.quality import texts as multilingual
from tools.models.m3 import build_tiny_m3, load_heads
from tools.models.multilingual import XLMR_VOCAB, read_gguf_kv, xlmr_tokenizer_json

from .helpers import cos

pytestmark = pytest.mark.skipif(not XLMR_VOCAB.is_file(), reason=f"{XLMR_VOCAB} is missing (make install-test)")

DOCS = multilingual.texts()[::9][:16]
QUERIES = [" ".join(d.split()[:3]) if len(d.split()) > 3 else d[: max(2, len(d) // 3)] for d in DOCS]
TEXTS = DOCS + QUERIES  # each query shares tokens with its document
SKIP = ("cls_token", "eos_token", "pad_token", "unk_token")


@pytest.fixture(scope="module")
def xlmr_tok():
    return xlmr_tokenizer_json()


@pytest.fixture(scope="module")
def m3_src(tmp_path_factory, xlmr_tok):
    return build_tiny_m3(tmp_path_factory.mktemp("m3") / "tiny-bge-m3", xlmr_tok)


@pytest.fixture(scope="module")
def m3_gguf(m3_src, tmp_path_factory):
    return convert_model(str(m3_src), tmp_path_factory.mktemp("m3-gguf") / "tiny-bge-m3-F32.gguf", "F32",
                         allow_pickle=True).path


@pytest.fixture(scope="module")
def m3(m3_gguf):
    with Embedder(m3_gguf) as emb:
        yield emb


def flag_outputs(h, ids, heads, unused: set[int]) -> tuple[np.ndarray, dict, np.ndarray]:
    """FlagEmbedding's dense, lexical weights and ColBERT vectors of one unpadded text: ``h`` (1, n, d)."""
    import torch
    import torch.nn.functional as F

    mask = torch.ones(h.shape[:2])
    weights = torch.relu(heads["sparse_linear"](h)).squeeze(-1)[0].numpy()
    lex: dict[int, float] = {}
    for w, idx in zip(weights, list(ids)):
        if idx not in unused and w > 0 and w > lex.get(idx, 0):
            lex[int(idx)] = float(w)
    vecs = heads["colbert_linear"](h[:, 1:]) * mask[:, 1:][:, :, None].float()
    n = int(mask.sum())
    return F.normalize(h[:, 0], dim=-1)[0].numpy(), lex, F.normalize(vecs, dim=-1)[0].numpy()[:n - 1]


@pytest.fixture(scope="module")
def reference(m3_src):
    """FlagEmbedding's outputs for TEXTS, computed with its equations in torch (fp32) on Hugging Face's model."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaModel

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(str(m3_src))
    model = XLMRobertaModel.from_pretrained(str(m3_src)).eval()
    heads = load_heads(m3_src)
    unused = {tok.convert_tokens_to_ids(tok.special_tokens_map[t]) for t in SKIP}
    out = {"ids": [], "dense": [], "sparse": [], "colbert": [], "hidden": [], "unused": unused}
    with torch.no_grad():
        for text in TEXTS:  # one at a time: no padding, the mask is all ones
            enc = tok([text], return_tensors="pt")
            h = model(**enc).last_hidden_state
            dense, lex, colbert = flag_outputs(h, enc["input_ids"][0].tolist(), heads, unused)
            for key, value in (("ids", enc["input_ids"][0].numpy()), ("hidden", h[0].numpy()), ("dense", dense),
                               ("sparse", lex), ("colbert", colbert)):
                out[key].append(value)
    return out


def ref_lexical(a: dict, b: dict) -> float:
    return sum(w * b[t] for t, w in a.items() if t in b)


def ref_colbert(q: np.ndarray, p: np.ndarray) -> float:
    import torch

    scores = torch.einsum("in,jn->ij", torch.from_numpy(q), torch.from_numpy(p)).max(-1).values
    return float(scores.sum() / q.shape[0])


@pytest.fixture(scope="module")
def outputs(m3):
    return m3.embed(TEXTS, outputs=choices.OUTPUTS)


# --- conversion ------------------------------------------------------------------------


def test_heads_are_metadata_and_the_file_loads_in_llama_cpp(m3_gguf, m3_src):
    kv = read_gguf_kv(m3_gguf)
    assert list(kv[keys.HEADS]) == ["colbert", "sparse"]
    assert kv[keys.HEAD_ROWS.format("sparse")] == 1 and kv[keys.HEAD_ROWS.format("colbert")] == 32
    assert sorted(int(i) for i in kv[keys.HEAD_SKIP_IDS]) == [0, 1, 2, 3]  # <s>, <pad>, </s>, <unk>
    assert not any(name.startswith(("sparse", "colbert")) for name in kv["__tensors__"])
    heads = load_heads(m3_src)
    import base64

    w = np.frombuffer(base64.b64decode(kv[keys.HEAD_WEIGHT.format("colbert")]), "<f4").reshape(32, 32)
    np.testing.assert_array_equal(w, heads["colbert_linear"].weight.detach().numpy())
    from gguf_embed.engine import llama

    with llama.capture_log():  # stock llama.cpp loads it (a tensor it did not expect would be refused)
        model = llama.Model(m3_gguf, n_gpu_layers=0)
    model.close()


def test_pickle_heads_need_allow_pickle(m3_src, tmp_path, caplog):
    out = convert_model(str(m3_src), tmp_path / "no-heads.gguf", "F32").path
    assert "--allow-pickle" in caplog.text and "sparse_linear.pt" in caplog.text
    with Embedder(out) as emb:
        assert emb.info.heads == () and emb.info.outputs == ("dense", "tokens")
        with pytest.raises(InvalidInputError, match="has no sparse or colbert head; it gives dense, tokens"):
            emb.embed(["x"], outputs=("dense", "sparse", "colbert"))


def test_safetensors_heads(tmp_path, xlmr_tok):
    src = build_tiny_m3(tmp_path / "st-m3", xlmr_tok, safetensors=True)
    out = convert_model(str(src), tmp_path / "st.gguf", "F32").path  # no pickle: no flag needed
    with Embedder(out) as emb:
        assert emb.info.heads == ("sparse", "colbert")


def test_inspect_shows_the_outputs(m3_gguf):
    from click.testing import CliRunner

    from gguf_embed.cli import main

    res = CliRunner().invoke(main, ["inspect", str(m3_gguf), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["outputs"] == list(choices.OUTPUTS)


# --- the three outputs against FlagEmbedding -------------------------------------------


def test_dense_matches(outputs, reference, m3):
    assert cos(outputs.embeddings, np.stack(reference["dense"])).min() >= 0.9999
    plain = m3.embed(TEXTS).embeddings  # the ordinary pooled path gives the same vectors
    assert cos(outputs.embeddings, plain).min() >= 0.9999


def test_sparse_matches(outputs, reference):
    """Same ids, weights within 1e-4. The weights differ by about 1e-3 of their size: llama.cpp's hidden states
    (its GELU is the tanh form read from an fp16 table) against Hugging Face's; this head's weights reach ~0.09."""
    for got, ref in zip(outputs.sparse, reference["sparse"]):
        assert list(got.indices) == sorted(ref)
        if ref:
            assert np.abs(got.values - np.array([ref[i] for i in sorted(ref)])).max() <= 1e-4


def test_colbert_matches(outputs, reference):
    for got, ref in zip(outputs.colbert, reference["colbert"]):
        assert got.shape == ref.shape
        assert cos(got, ref).min() >= 0.9999


def test_scores_match(outputs, reference):
    n, shared = len(DOCS), 0
    for q in range(n):  # every query against every document: its own (shared tokens) and the others
        for d in range(n):
            qi = n + q
            lex = ref_lexical(reference["sparse"][qi], reference["sparse"][d])
            shared += lex > 0
            assert abs(mv.lexical_score(outputs.sparse[qi], outputs.sparse[d]) - lex) <= 1e-4
            # MaxSim averages dot products of vectors that agree to cos >= 0.9999: up to ~1.3e-4 apart here
            # (the same equations on llama.cpp's own states agree to 1e-6: test_head_math_on_the_same_states)
            assert abs(mv.colbert_score(outputs.colbert[qi], outputs.colbert[d])
                       - ref_colbert(reference["colbert"][qi], reference["colbert"][d])) <= 3e-4
            # dense vectors agree to cos >= 0.9999, so their dot products to about 1e-4
            assert abs(mv.dense_score(outputs.embeddings[qi], outputs.embeddings[d])
                       - float(reference["dense"][qi] @ reference["dense"][d])) <= 5e-4
    assert shared >= n  # the lexical scores compared are not all zero


def test_head_math_on_the_same_states(m3, m3_src, reference):
    """FlagEmbedding's equations on llama.cpp's own token states give what gguf-embed's numpy heads give:
    everything that differs from Hugging Face end to end is the encoder's float noise, not the heads."""
    import torch

    seqs = m3.tokenize(TEXTS)
    hidden = m3.session.token_rows(seqs)
    ours = m3.finish_tokens(hidden, seqs, choices.OUTPUTS)
    heads = load_heads(m3_src)
    refs = []
    with torch.no_grad():
        for h, ids in zip(hidden, seqs):
            refs.append(flag_outputs(torch.from_numpy(h)[None], ids.tolist(), heads, reference["unused"]))
    for i, (dense, lex, colbert) in enumerate(refs):
        assert np.abs(ours.embeddings[i] - dense).max() <= 1e-6
        assert list(ours.sparse[i].indices) == sorted(lex)
        assert all(abs(ours.sparse[i].to_dict()[k] - w) <= 1e-6 for k, w in lex.items())
        assert np.abs(ours.colbert[i] - colbert).max() <= 1e-6
    n = len(DOCS)
    for q in range(n, 2 * n):
        for d in range(n):
            assert abs(mv.lexical_score(ours.sparse[q], ours.sparse[d]) - ref_lexical(refs[q][1], refs[d][1])) <= 1e-6
            assert abs(mv.colbert_score(ours.colbert[q], ours.colbert[d]) - ref_colbert(refs[q][2], refs[d][2])) <= 1e-6


def test_tokens_are_every_hidden_state(outputs, reference):
    for got, ids, hidden in zip(outputs.token_vectors, reference["ids"], reference["hidden"]):
        assert list(got.ids) == list(ids)
        assert cos(got.vectors, hidden).min() >= 0.9999
        np.testing.assert_allclose(np.linalg.norm(got.vectors, axis=1), 1.0, atol=1e-5)


def test_default_return_is_unchanged(m3):
    res = m3.embed(TEXTS[:2])
    assert res.sparse is None and res.colbert is None and res.token_vectors is None
    assert res.embeddings.shape == (2, 32)


def test_output_mistakes_are_one_line(m3):
    with pytest.raises(InvalidInputError, match="unknown output 'bm25'"):
        m3.embed(["x"], outputs=("bm25",))
    with pytest.raises(InvalidInputError, match="non-empty list"):
        m3.embed(["x"], outputs="sparse")


# --- token-level output for any model --------------------------------------------------


@pytest.mark.parametrize("which", ["minilm", "qwen3"])
def test_tokens_match_sentence_transformers(which, minilm_embedder, qwen_embedder, st_minilm, st_tiny_qwen):
    emb, st, floor = {"minilm": (minilm_embedder, st_minilm, 0.999),  # the F16 file
                      "qwen3": (qwen_embedder, st_tiny_qwen, 0.9999)}[which]
    texts = multilingual.texts()[:12]
    res = emb.embed(texts, outputs=("tokens",), normalize=False)
    assert res.embeddings is None
    # one text at a time: no padding to trim (Qwen3's tokenizer pads on the left)
    ref = [st.encode([t], output_value="token_embeddings", convert_to_numpy=False)[0] for t in texts]
    for got, want, text in zip(res.token_vectors, ref, texts):
        assert list(got.ids) == st.tokenizer(text)["input_ids"]
        assert cos(got.vectors, want.float().numpy()).min() >= floor
    dense = emb.embed(texts, outputs=("dense", "tokens")).embeddings
    assert cos(dense, emb.embed(texts).embeddings).min() >= 0.9999  # mean / last-token pooling of the same pass


def test_model_without_heads_names_what_it_has(minilm_embedder):
    with pytest.raises(InvalidInputError, match=r"has no sparse head; it gives dense, tokens"):
        minilm_embedder.embed(["x"], outputs=("sparse",))


# --- the command line ----------------------------------------------------------------


def run_cli(*argv):
    from click.testing import CliRunner

    from gguf_embed.cli import main

    return CliRunner().invoke(main, [str(a) for a in argv])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("m3-corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(DOCS + DOCS[:2])), encoding="utf-8")  # two repeated
    return path


def test_cli_jsonl_rows(m3, m3_gguf, corpus, tmp_path):
    res = run_cli("encode", corpus, "-m", m3_gguf, "--emit", "sparse,dense,colbert", "-o", tmp_path / "o.jsonl", "-q")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    want = m3.embed(DOCS + DOCS[:2], outputs=("dense", "sparse", "colbert"))
    assert [r["id"] for r in rows] == [f"d{i}" for i in range(len(DOCS) + 2)]
    assert cos(np.array([r["embedding"] for r in rows]), want.embeddings).min() >= 0.9999
    for r, sp, cb in zip(rows, want.sparse, want.colbert):
        assert [e["index"] for e in r["sparse"]] == list(sp.indices)  # TEI's shape, ids ascending
        assert np.abs(np.array([e["value"] for e in r["sparse"]]) - sp.values).max() <= 1e-4
        assert cos(np.array(r["colbert"]), cb).min() >= 0.9999
        assert "token_ids" not in r
    manifest = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())
    assert manifest["outputs"] == ["dense", "sparse", "colbert"]
    assert manifest["cache"].startswith("not used") and manifest["duplicates"] == 2
    assert manifest["embedded"] == len(DOCS)


def test_cli_parquet_columns(m3, m3_gguf, corpus, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "o.parquet"
    res = run_cli("encode", corpus, "-m", m3_gguf, "--emit", "sparse,colbert,tokens", "-o", out, "-q", "--keep-text")
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.column_names == ["id", "text", "sparse_indices", "sparse_values", "colbert", "token_ids",
                                  "token_embeddings"]
    want = m3.embed(DOCS + DOCS[:2], outputs=("sparse", "colbert", "tokens"))
    got = table.to_pylist()
    for r, sp, cb, tv in zip(got, want.sparse, want.colbert, want.token_vectors):
        assert r["sparse_indices"] == sp.indices.tolist()
        assert np.abs(np.array(r["sparse_values"]) - sp.values).max() <= 1e-4
        assert cos(np.array(r["colbert"]), cb).min() >= 0.9999
        assert r["token_ids"] == tv.ids.tolist()
        assert cos(np.array(r["token_embeddings"]), tv.vectors).min() >= 0.9999
    assert json.loads((tmp_path / "o.parquet.manifest.json").read_text())["outputs"] == ["sparse", "colbert", "tokens"]


def test_cli_tokens_for_any_model_and_errors(minilm_gguf, corpus, tmp_path, minilm_embedder):
    res = run_cli("encode", corpus, "-m", minilm_gguf(), "--emit", "tokens", "--no-cache")
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout.splitlines()[0])
    assert first["token_ids"] == minilm_embedder.tokenize([DOCS[0]])[0].tolist() and "embedding" not in first
    res = run_cli("encode", corpus, "-m", minilm_gguf(), "--emit", "dense,sparse", "-o", tmp_path / "x.jsonl")
    assert res.exit_code != 0 and not (tmp_path / "x.jsonl").exists()
    assert "has no sparse head; it gives dense, tokens" in res.output and "Traceback" not in res.output
    res = run_cli("encode", corpus, "-m", minilm_gguf(), "--emit", "colbert,bm25")
    assert res.exit_code == 2 and "'bm25' is not an output" in res.output
    res = run_cli("encode", corpus, "-m", minilm_gguf(), "--emit", "tokens", "-o", tmp_path / "x.npy")
    assert res.exit_code == 2 and "npy output holds dense vectors only" in res.output


# --- HTTP: TEI's /embed_sparse and /embed_all ---------------------------------------------


@pytest.fixture(scope="module")
def server(m3, minilm_embedder):
    from gguf_embed.server import create_app

    from .helpers import RunningServer

    with RunningServer(create_app([m3, minilm_embedder])) as srv:
        yield srv.wait_ready()


def test_embed_sparse_route(server, m3):
    import httpx

    r = httpx.post(server.url + "/embed_sparse", json={"inputs": DOCS[:3], "model": m3.name}, timeout=60)
    assert r.status_code == 200, r.text
    want = m3.embed(DOCS[:3], outputs=("sparse",)).sparse
    for got, sp in zip(r.json(), want):
        assert [e["index"] for e in got] == list(sp.indices)
        assert np.abs(np.array([e["value"] for e in got]) - sp.values).max() <= 1e-4
    one = httpx.post(server.url + "/embed_sparse", json={"inputs": DOCS[0], "model": m3.name}, timeout=60).json()
    assert len(one) == 1 and [e["index"] for e in one[0]] == list(want[0].indices)


def test_embed_all_route(server, m3, minilm_embedder):
    import httpx

    for emb in (m3, minilm_embedder):  # any model
        r = httpx.post(server.url + "/embed_all", json={"inputs": DOCS[:2], "model": emb.name}, timeout=60)
        assert r.status_code == 200, r.text
        want = emb.embed(DOCS[:2], outputs=("tokens",), normalize=False).token_vectors
        for got, tv in zip(r.json(), want):  # raw states by default, as TEI's
            assert cos(np.array(got), tv.vectors).min() >= 0.9999
            assert np.abs(np.linalg.norm(got, axis=1) / np.linalg.norm(tv.vectors, axis=1) - 1).max() <= 1e-3
    r = httpx.post(server.url + "/embed_all", json={"inputs": "x y", "model": m3.name, "normalize": True}, timeout=60)
    np.testing.assert_allclose(np.linalg.norm(r.json()[0], axis=1), 1.0, atol=1e-5)


def test_route_errors_are_4xx(server, m3, minilm_embedder):
    import httpx

    r = httpx.post(server.url + "/embed_sparse", json={"inputs": ["x"], "model": minilm_embedder.name}, timeout=60)
    assert r.status_code == 400 and "has no sparse head; it gives dense, tokens" in r.json()["error"]["message"]
    for body in ({"model": m3.name}, {"inputs": [], "model": m3.name}, {"inputs": [1], "model": m3.name},
                 {"inputs": "x", "truncate": "sideways", "model": m3.name}):
        assert httpx.post(server.url + "/embed_all", json=body, timeout=60).status_code == 400
    long = " ".join(["word"] * 2000)
    r = httpx.post(server.url + "/embed_sparse", json={"inputs": long, "model": m3.name}, timeout=60)
    assert r.status_code == 400
    r = httpx.post(server.url + "/embed_sparse", json={"inputs": long, "truncate": True, "model": m3.name}, timeout=60)
    assert r.status_code == 200

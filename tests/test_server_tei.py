"""TEI's API on `gguf-embed serve`: `huggingface_hub.InferenceClient(URL).feature_extraction`
and plain HTTP against `/embed`, `/info` and TEI's `/rerank`; every mistake a 4xx in TEI's shape."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gguf_embed.errors import GGUFEmbedError
from gguf_embed.server import create_app
from gguf_embed.server.embeddings import EmbeddingRequest
from gguf_embed.server.tei import parse_tei_embed
from tools.texts import VARIED_TEXTS

from .helpers import RunningServer, cos
from .test_hostile_requests import JSON, TEXT, check_error

TEXTS = VARIED_TEXTS[:8]


@pytest.fixture(scope="module")
def server(qwen_embedder, cross_reranker):
    with RunningServer(create_app([qwen_embedder, cross_reranker], max_inputs=64)) as srv:
        yield srv.wait_ready()


def embed(server, body, status=200):
    r = httpx.post(server.url + "/embed", json=body, timeout=60)
    assert r.status_code == status, r.text
    return np.array(r.json()) if status == 200 else r.json()


def test_inference_client_feature_extraction(server, qwen_embedder, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the tests' offline switch blocks 127.0.0.1 too
    client = InferenceClient(model=server.url)
    got = client.feature_extraction(TEXTS)
    assert got.shape == (len(TEXTS), qwen_embedder.dimensions)
    assert cos(got, qwen_embedder.embed(TEXTS).embeddings).min() >= 0.99999
    one = client.feature_extraction(TEXTS[0], prompt_name="query", dimensions=32)
    expect = qwen_embedder.embed(TEXTS[:1], input_type="query", dimensions=32).embeddings
    assert one.shape == (1, 32) and cos(one, expect)[0] >= 0.99999


def test_embed_options(server, qwen_embedder):
    raw = embed(server, {"inputs": TEXTS, "normalize": False})
    expect = qwen_embedder.embed(TEXTS, normalize=False).embeddings
    assert cos(raw, expect).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), np.linalg.norm(expect, axis=1), rtol=1e-3)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    long_text = " ".join(f"w{i}" for i in range(qwen_embedder.max_tokens + 40))
    for direction, policy in (("right", "end"), ("Left", "start")):
        got = embed(server, {"inputs": long_text, "truncate": True, "truncation_direction": direction})
        assert cos(got, qwen_embedder.embed([long_text], truncate=policy).embeddings)[0] >= 0.99999
    err = embed(server, {"inputs": long_text}, status=400)  # TEI's default: refuse
    assert err["error_type"] == "Validation" and "limit" in err["error"]


def test_info(server, qwen_embedder):
    info = httpx.get(server.url + "/info").json()
    assert info["model_id"] == qwen_embedder.name
    assert info["model_type"] == {"embedding": {"pooling": qwen_embedder.info.pooling}}
    assert info["max_input_length"] == qwen_embedder.max_tokens and info["model_dtype"] == "float32"
    assert info["max_client_batch_size"] == 64 and info["auto_truncate"] is False


def test_tei_rerank_top_n_raw_scores_return_text(server, cross_reranker):
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "France's capital city is Paris."]
    body = {"query": "capital of France", "texts": docs, "top_n": 2, "return_text": True, "raw_scores": True}
    r = httpx.post(server.url + "/rerank", json=body)
    assert r.status_code == 200, r.text
    ranked = cross_reranker.rerank(body["query"], docs, top_n=2, raw_scores=True)
    assert [(x["index"], x["text"]) for x in r.json()] == [(i, docs[i]) for i, _ in ranked]
    np.testing.assert_allclose([x["score"] for x in r.json()], [s for _, s in ranked], rtol=1e-4, atol=1e-5)


HOSTILE = [
    # (path, body, status, words in the error)
    ("/embed", b"{oops", 400, "JSON"),
    ("/embed", {}, 400, "inputs"),
    ("/embed", {"inputs": []}, 400, "inputs"),
    ("/embed", {"inputs": [1, 2]}, 400, "inputs"),
    ("/embed", {"inputs": ["a", ""]}, 400, "empty"),
    ("/embed", {"inputs": "a\ud800"}, 400, "surrogate"),
    ("/embed", {"inputs": "a", "normalize": "yes"}, 400, "normalize"),
    ("/embed", {"inputs": "a", "truncate": 1}, 400, "truncate"),
    ("/embed", {"inputs": "a", "truncation_direction": "up"}, 400, "truncation_direction"),
    ("/embed", {"inputs": "a", "prompt_name": "passage"}, 400, "prompt_name"),
    ("/embed", {"inputs": "a", "dimensions": 0}, 400, "dimensions"),
    ("/embed", {"inputs": "a", "dimensions": 3}, 400, "dimensions"),
    ("/embed", {"inputs": ["a"] * 65}, 413, "65"),
    ("/", [1], 400, "object"),
    ("/info", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("path,body,status,words", HOSTILE)
def test_mistakes_are_4xx_in_teis_shape(server, path, body, status, words):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(server.url + path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()
    assert set(err) == {"error", "error_type"} and words in err["error"], err
    assert err["error_type"] in ("Validation", "Tokenizer")


TEI_FIELDS = {"inputs": TEXT | st.lists(TEXT, max_size=4) | JSON, "normalize": st.booleans() | JSON,
              "truncate": st.booleans() | JSON, "truncation_direction": st.sampled_from(["left", "Right", "up"]) | JSON,
              "prompt_name": st.sampled_from(["query", "document", "x"]) | JSON,
              "dimensions": st.integers(-1, 400) | JSON, "model": TEXT | JSON}


@settings(max_examples=300, deadline=None)
@given(body=JSON | st.fixed_dictionaries({}, optional=TEI_FIELDS))
def test_parse_tei_embed_takes_any_body(body):
    try:
        req = parse_tei_embed(json.dumps(body).encode(), max_inputs=8, default_truncate="error")
    except GGUFEmbedError as exc:
        check_error(exc)
        return
    assert isinstance(req, EmbeddingRequest) and 1 <= req.n_inputs <= 8
    for text in req.texts:
        assert text and text.encode("utf-8")


@settings(max_examples=60, deadline=None)
@given(body=st.fixed_dictionaries({}, optional=TEI_FIELDS), path=st.sampled_from(["/embed", "/"]))
def test_the_app_answers_any_tei_body_with_2xx_or_4xx(server, body, path):
    r = httpx.post(server.url + path, content=json.dumps(body).encode(), timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code < 500, (path, body, r.text)
    if r.status_code >= 400:
        assert set(r.json()) == {"error", "error_type"}, r.text


def test_tokenize_and_decode(server, qwen_embedder):
    text = "Hello wonderful world"
    toks = httpx.post(server.url + "/tokenize", json={"inputs": text}, timeout=30).json()
    expect = qwen_embedder.tokenize([text])[0].tolist()
    assert len(toks) == 1 and [t["id"] for t in toks[0]] == expect
    assert [t["special"] for t in toks[0]][-1] is True and not any(t["special"] for t in toks[0][:-1])
    assert "".join(t["text"] for t in toks[0][:-1]) == text
    plain = httpx.post(server.url + "/tokenize", json={"inputs": [text, "x"], "add_special_tokens": False}).json()
    assert [t["id"] for t in plain[0]] == expect[:-1] and len(plain) == 2
    texts = httpx.post(server.url + "/decode", json={"ids": expect}, timeout=30).json()
    assert texts == [text]
    both = httpx.post(server.url + "/decode", json={"ids": [expect, expect[:1]], "skip_special_tokens": False}).json()
    assert both[0].startswith(text) and len(both[0]) > len(text) and len(both) == 2


@pytest.mark.parametrize("path,body", [
    ("/tokenize", {}),
    ("/tokenize", {"inputs": 5}),
    ("/tokenize", {"inputs": "a", "add_special_tokens": "yes"}),
    ("/tokenize", {"inputs": "a", "prompt_name": "passage"}),
    ("/decode", {}),
    ("/decode", {"ids": []}),
    ("/decode", {"ids": [1.5]}),
    ("/decode", {"ids": [[1], "a"]}),
    ("/decode", {"ids": [10**9]}),
    ("/decode", {"ids": [-1]}),
    ("/decode", {"ids": [1], "skip_special_tokens": 1}),
    ("/rerank", {"query": "q", "texts": []}),
    ("/rerank", {"query": "", "texts": ["a"]}),
    ("/rerank", {"query": "q", "texts": ["a"], "truncate": "yes"}),
    ("/rerank", {"query": "q", "texts": ["a"], "top_n": 0}),
])
def test_tokenize_decode_rerank_mistakes_in_tei_shape(server, path, body):
    r = httpx.post(server.url + path, json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "error_type"}, r.json()


def test_predict_scores_pairs_as_the_cross_encoder_does(server, cross_encoder_src):
    """``/predict`` against sentence-transformers' CrossEncoder in fp32 (sigmoid of the one logit;
    the raw logit with ``raw_scores``); pairs of different first texts keep their order."""
    from sentence_transformers import CrossEncoder

    pairs = [["capital of France", "Paris is the capital of France."], ["capital of France", "Bananas are yellow."],
             ["yellow fruit", "Bananas are yellow."], ["capital of France", "France's capital city is Paris."]]
    ref = CrossEncoder(str(cross_encoder_src), device="cpu")
    logits = np.asarray(ref.predict([tuple(p) for p in pairs], activation_fn=lambda x: x), dtype=np.float64).ravel()
    r = httpx.post(server.url + "/predict", json={"inputs": pairs})
    assert r.status_code == 200, r.text
    got = [x[0]["score"] for x in r.json()]
    assert all(len(x) == 1 and x[0]["label"] == "LABEL_0" for x in r.json())
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logits)), atol=1e-3)
    raw = httpx.post(server.url + "/predict", json={"inputs": pairs, "raw_scores": True}).json()
    np.testing.assert_allclose([x[0]["score"] for x in raw], logits, atol=1e-2, rtol=1e-3)
    one = httpx.post(server.url + "/predict", json={"inputs": pairs[2]}).json()
    assert one[0]["label"] == "LABEL_0" and abs(one[0]["score"] - got[2]) < 1e-5


@pytest.mark.parametrize("body", [{}, {"inputs": "a single text"}, {"inputs": [["only one"]]},
                                  {"inputs": [["a", ""]]}, {"inputs": [["a", 3]]}, {"inputs": ["a", "b", "c"]},
                                  {"inputs": [["a", "b"]], "raw_scores": "yes"},
                                  {"inputs": [["a", "b"]] * 65}, {"inputs": [["a", "\ud800"]]}])
def test_predict_mistakes_are_4xx_in_tei_shape(server, body):
    r = httpx.post(server.url + "/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert set(r.json()) == {"error", "error_type"}, r.text

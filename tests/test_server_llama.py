"""llama.cpp's own server tests for embeddings and rerank (tools/server/tests/unit/test_embedding.py
and test_rerank.py), request for request against `gguf-embed serve` on 127.0.0.1, with
all-MiniLM-L6-v2 (the same uncased WordPiece vocabulary as llama.cpp's bge-small test model, so
its token counts hold) and a MiniLM cross-encoder; then llama-server's native routes beyond them.

Ported as they are: single, multiple (with the flash-attention lengths), mixed inputs (token ids,
mixed ids and text, ``prompt_string`` and ``content`` objects), content parts the same as the
string, invalid inputs, pooling mean, pooling none on ``/embeddings`` (per-token vectors, not
normalised) and its refusal on ``/v1/embeddings``, the OpenAI library (single, multiple, base64),
the over-long error ("too large"), same prompt same result, usage counts (single and multiple);
rerank, TEI-format rerank, invalid rerank bodies, rerank top_n (both formats), embeddings refused
by a reranker on ``/embeddings`` and ``/v1/embeddings``.

Adapted or skipped, and why:
- Server flags (``--pooling last``, flash attention) are llama-server's start-up options; the
  requests run against the model's own pooling (MiniLM: mean). ``--pooling none`` is asked for
  per request here (``"pooling": "none"``), the only way gguf-embed offers it.
- The flash-attention lengths (``"c " * 255``: 257 tokens with [CLS] and [SEP]) pass MiniLM's
  limit of 256, so those requests say ``"truncate": "end"`` (llama.cpp's preset has a larger context).
- ``("", False)`` in test_embedding_mixed_input (an empty string on ``/v1/embeddings``): gguf-embed
  follows OpenAI's API there, which refuses an empty input (a 400, no crash); llama-server's native
  routes embed it, and that case runs against ``/embedding`` here.
- Rerank: which document ranks first and last (indices 2 and 3) belongs to llama.cpp's trained
  jina-reranker-v1-tiny; the cross-encoder here has a random classification head, so only the
  response shape and that the scores differ are checked. Rerank usage (19 and 26 tokens) is that
  model's tokenizer; here the count is checked against the served reranker's own tokenisation.
"""

from __future__ import annotations

import base64
import struct

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gguf_embed.errors import GGUFEmbedError
from gguf_embed.server import create_app
from gguf_embed.server.llama import parse_native

from .helpers import RunningServer, cos
from .test_hostile_requests import JSON, TEXT, check_error

EPSILON = 1e-3
MEANING = "I believe the meaning of life is"
TEST_DOCUMENTS = [
    "A machine is a physical system that uses power to apply forces and control movement to perform an action. "
    "The term is commonly applied to artificial devices, such as those employing engines or motors, but also to "
    "natural biological macromolecules, such as molecular machines.",
    "Learning is the process of acquiring new understanding, knowledge, behaviors, skills, values, attitudes, and "
    "preferences. The ability to learn is possessed by humans, non-human animals, and some machines; there is also "
    "evidence for some kind of learning in certain plants.",
    "Machine learning is a field of study in artificial intelligence concerned with the development and study of "
    "statistical algorithms that can learn from data and generalize to unseen data, and thus perform tasks without "
    "explicit instructions.",
    "Paris, capitale de la France, est une grande ville européenne et un centre mondial de l'art, de la mode, de la "
    "gastronomie et de la culture. Son paysage urbain du XIXe siècle est traversé par de larges boulevards et la "
    "Seine.",
]


@pytest.fixture(scope="module")
def server(minilm_embedder):
    with RunningServer(create_app([minilm_embedder], max_inputs=64)) as srv:
        yield srv.wait_ready()


@pytest.fixture(scope="module")
def rerank_server(cross_reranker):
    with RunningServer(create_app([cross_reranker], max_inputs=64)) as srv:
        yield srv.wait_ready()


def post(srv, path, body, status=200):
    r = httpx.post(srv.url + path, json=body, timeout=60)
    assert r.status_code == status, r.text
    return r.json()


def norm2(v) -> float:
    return float(np.sum(np.square(np.asarray(v, dtype=np.float64))))


# --- test_embedding.py -------------------------------------------------------------------------


def test_embedding_single(server):
    res = post(server, "/v1/embeddings", {"input": MEANING})
    assert len(res["data"]) == 1 and len(res["data"][0]["embedding"]) > 1
    assert abs(norm2(res["data"][0]["embedding"]) - 1) < EPSILON


@pytest.mark.parametrize("inputs", [
    [MEANING, "Write a joke about AI from a very long prompt which will not be truncated", "This is a test",
     "This is another test"],
    ["a " * 253, "b " * 254, "c " * 255, "d " * 256],  # the flash-attention lengths
    [MEANING, "Write a joke about AI", "This is a test"],  # pooling mean, multiple
])
def test_embedding_multiple(server, inputs):
    res = post(server, "/v1/embeddings", {"input": inputs, "truncate": "end"})
    assert len(res["data"]) == len(inputs)
    assert all(len(d["embedding"]) > 1 for d in res["data"])


@pytest.mark.parametrize("value,is_multi_prompt", [
    ("string", False),
    ([12, 34, 56], False),
    ([12, 34, "string", 56, 78], False),
    (["string1", "string2"], True),
    (["string1", [12, 34, 56]], True),
    ([[12, 34, 56], [12, 34, 56]], True),
    ([[12, 34, 56], [12, "string", 34, 56]], True),
    ({"prompt_string": "string"}, False),
    ({"content": [{"type": "text", "text": "string"}]}, False),
    (["string1", {"prompt_string": "string2"}, {"content": [{"type": "text", "text": "string3"}]}], True),
])
def test_embedding_mixed_input(server, value, is_multi_prompt):
    data = post(server, "/v1/embeddings", {"input": value})["data"]
    assert len(data) == (len(value) if is_multi_prompt else 1)
    assert all(len(d["embedding"]) > 1 for d in data)


def test_embedding_empty_string_native(server):
    """llama-server's ``("", False)`` case: embedded on its native route (OpenAI's refuses it)."""
    res = post(server, "/embedding", {"content": ""})
    assert len(res) == 1 and len(res[0]["embedding"][0]) > 1
    post(server, "/v1/embeddings", {"input": ""}, 400)


def test_embedding_content_text_same_as_string(server):
    parts = {"content": [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]}
    data = post(server, "/v1/embeddings", {"input": ["hello world", parts]})["data"]
    assert data[0]["embedding"] == data[1]["embedding"]


@pytest.mark.parametrize("value", [
    [],
    {"content": "string"},
    {"content": [{"type": "input_audio", "input_audio": {}}]},
    {"content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},  # not multimodal
])
def test_embedding_invalid_input(server, value):
    assert "error" in post(server, "/v1/embeddings", {"input": value}, 400)


def test_embedding_pooling_none(server):
    res = post(server, "/embeddings", {"input": "hello hello hello", "pooling": "none"})
    assert len(res[0]["embedding"]) == 5  # 3 text tokens + 2 special
    for row in res[0]["embedding"]:
        assert abs(norm2(row) - 1) > EPSILON  # not normalised


def test_embedding_pooling_none_oai(server):
    assert "error" in post(server, "/v1/embeddings", {"input": "hello hello hello", "pooling": "none"}, 400)


def test_embedding_openai_library(server, minilm_embedder):
    from openai import OpenAI

    client = OpenAI(api_key="dummy", base_url=f"{server.url}/v1")
    one = client.embeddings.create(model="text-embedding-3-small", input=MEANING)
    assert len(one.data) == 1 and len(one.data[0].embedding) > 1
    texts = [MEANING, "Write a joke about AI from a very long prompt which will not be truncated", "This is a test",
             "This is another test"]
    many = client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert len(many.data) == 4
    got = np.array([d.embedding for d in many.data])
    assert cos(got, minilm_embedder.embed(texts).embeddings).min() >= 0.99999


def test_embedding_error_prompt_too_long(server):
    res = post(server, "/v1/embeddings", {"input": "This is a test " * 512}, 400)
    assert "too large" in res["error"]["message"]
    native = post(server, "/embedding", {"content": "This is a test " * 512}, 400)
    assert "too large" in native["error"]["message"] and native["error"]["code"] == 400


def test_same_prompt_give_same_result(server):
    data = post(server, "/v1/embeddings", {"input": [MEANING] * 5})["data"]
    assert len(data) == 5
    v0 = np.array(data[0]["embedding"])
    for d in data[1:]:
        assert np.abs(np.array(d["embedding"]) - v0).max() < EPSILON


@pytest.mark.parametrize("content,n_tokens", [(MEANING, 9), ("This is a test", 6)])
def test_embedding_usage_single(server, content, n_tokens):
    usage = post(server, "/v1/embeddings", {"input": content})["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] == n_tokens


def test_embedding_usage_multiple(server):
    usage = post(server, "/v1/embeddings", {"input": [MEANING, MEANING]})["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] == 2 * 9


def test_embedding_openai_library_base64(server):
    vec0 = post(server, "/v1/embeddings", {"input": "Test base64 embedding output"})["data"][0]["embedding"]
    res = post(server, "/v1/embeddings", {"input": "Test base64 embedding output", "encoding_format": "base64"})
    assert len(res["data"]) == 1 and isinstance(res["data"][0]["embedding"], str)
    decoded = base64.b64decode(res["data"][0]["embedding"])
    floats = struct.unpack(f"{len(decoded) // 4}f", decoded)
    assert len(floats) == len(vec0)
    assert max(abs(x - y) for x, y in zip(floats, vec0)) < EPSILON


# --- test_rerank.py ----------------------------------------------------------------------------


def test_rerank(rerank_server):
    res = post(rerank_server, "/rerank", {"query": "Machine learning is", "documents": TEST_DOCUMENTS})
    scores = [d["relevance_score"] for d in res["results"]]
    assert len(scores) == 4 and max(scores) > min(scores)
    assert sorted(d["index"] for d in res["results"]) == [0, 1, 2, 3]


def test_rerank_tei_format(rerank_server):
    res = post(rerank_server, "/rerank", {"query": "Machine learning is", "texts": TEST_DOCUMENTS})
    scores = [d["score"] for d in res]
    assert len(res) == 4 and max(scores) > min(scores)


@pytest.mark.parametrize("documents", [[], None, 123, [1, 2, 3]])
def test_invalid_rerank_req(rerank_server, documents):
    assert "error" in post(rerank_server, "/rerank", {"query": "Machine learning is", "documents": documents}, 400)


@pytest.mark.parametrize("query,doc1,doc2", [
    ("Machine learning is", "A machine", "Learning is"),
    ("Which city?", "Machine learning is ", "Paris, capitale de la"),
])
def test_rerank_usage(rerank_server, cross_reranker, query, doc1, doc2):
    usage = post(rerank_server, "/rerank", {"query": query, "documents": [doc1, doc2]})["usage"]
    n_tokens = sum(len(s) for s in cross_reranker.tokenize_pairs(query, [doc1, doc2]))
    assert usage["prompt_tokens"] == usage["total_tokens"] == n_tokens


@pytest.mark.parametrize("top_n,expected_len", [(None, 4), (2, 2), (4, 4), (99, 4)])
@pytest.mark.parametrize("field", ["documents", "texts"])
def test_rerank_top_n(rerank_server, field, top_n, expected_len):
    body = {"query": "Machine learning is", field: TEST_DOCUMENTS}
    if top_n is not None:
        body["top_n"] = top_n
    res = post(rerank_server, "/rerank", body)
    assert len(res["results"] if field == "documents" else res) == expected_len


@pytest.mark.parametrize("endpoint", ["/embeddings", "/v1/embeddings", "/embedding"])
def test_embeddings_rejected_with_rank_pooling(rerank_server, endpoint):
    assert "rerank" in post(rerank_server, endpoint, {"input": "hello"}, 400)["error"]["message"]


# --- llama-server's native routes beyond its tests ---------------------------------------------


def test_native_shape_and_content_forms(server, minilm_embedder):
    texts = ["hello world", "This is a test"]
    expect = minilm_embedder.embed(texts).embeddings
    for path in ("/embedding", "/embeddings"):
        res = post(server, path, {"content": texts})
        assert [d["index"] for d in res] == [0, 1]
        assert all(len(d["embedding"]) == 1 for d in res)  # one pooled row per input
        assert cos(np.array([d["embedding"][0] for d in res]), expect).min() >= 0.99999
    one = post(server, "/embedding", {"content": texts[0]})
    assert len(one) == 1 and cos(np.array(one[0]["embedding"]), expect[:1])[0] >= 0.99999
    ids = minilm_embedder.tokenize(texts[:1])[0].tolist()
    by_ids = post(server, "/embedding", {"content": ids})
    assert cos(np.array(by_ids[0]["embedding"]), expect[:1])[0] >= 0.99999
    inner = minilm_embedder.session.tokenize("hello", add_special=False).tolist()
    mixed = post(server, "/embedding", {"content": [ids[0], *inner, " world", ids[-1]]})
    assert cos(np.array(mixed[0]["embedding"]), expect[:1])[0] >= 0.99999


@pytest.mark.parametrize("p", [-1, 0, 1, 2, 3, 7])
def test_embd_normalize(server, minilm_embedder, p):
    raw = minilm_embedder.embed(["This is a test"], normalize=False).embeddings[0].astype(np.float64)
    if p == -1:
        expect = raw
    elif p == 0:
        expect = raw * 32760.0 / np.abs(raw).max()
    else:
        expect = raw / np.sum(np.abs(raw) ** p) ** (1 / p)
    native = np.array(post(server, "/embedding", {"content": "This is a test", "embd_normalize": p})[0]["embedding"][0])
    oai = np.array(post(server, "/v1/embeddings", {"input": "This is a test", "embd_normalize": p})["data"][0]["embedding"])
    for got in (native, oai):
        assert cos(got, expect)[0] >= 0.99999
        np.testing.assert_allclose(np.linalg.norm(got), np.linalg.norm(expect), rtol=1e-3)


def test_native_per_token_matches_embed_all(server, minilm_embedder):
    res = post(server, "/embedding", {"content": ["hello hello hello", [101, 7592, 102]], "pooling": "none"})
    seqs = minilm_embedder.tokenize(["hello hello hello"])
    expect = minilm_embedder.outputs_for(seqs, ("tokens",), None, False).token_vectors[0].vectors
    got = np.array(res[0]["embedding"])
    assert got.shape == expect.shape and cos(got, expect).min() >= 0.99999
    assert len(res[1]["embedding"]) == 3


@pytest.mark.parametrize("body,param", [
    ({}, "content"),
    ({"content": None}, "content"),
    ({"content": 3.5}, "content"),
    ({"content": [[]]}, "content"),
    ({"content": ["a", None]}, "content"),
    ({"content": [[1, 2.5]]}, "content"),
    ({"content": [{"prompt_string": "a", "multimodal_data": ["AAAA"]}]}, "content"),
    ({"content": [{"foo": "a"}]}, "content"),
    ({"content": [10**9]}, "input"),
    ({"content": "a", "embd_normalize": "2"}, "embd_normalize"),
    ({"content": "a", "embd_normalize": -2}, "embd_normalize"),
    ({"content": "a", "embd_normalize": True}, "embd_normalize"),
    ({"content": "a", "pooling": "mean"}, "pooling"),
    ({"content": "a", "truncate": "middle"}, "truncate"),
])
def test_native_mistakes_are_400s_in_llama_server_shape(server, body, param):
    err = post(server, "/embedding", body, 400)["error"]
    assert err["code"] == 400 and err["type"] and err["message"], err


PROMPT = TEXT | st.lists(st.integers(-3, 40000) | TEXT, max_size=4) | \
    st.fixed_dictionaries({"content": st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}) | JSON,
                                               max_size=3)}) | st.fixed_dictionaries({"prompt_string": TEXT})


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["content", "input", "embd_normalize", "pooling", "model", "truncate"]),
                       PROMPT | st.lists(PROMPT, max_size=3) | JSON | st.integers(-3, 5), max_size=4))
def test_native_parser_answers_a_request_or_a_4xx(body):
    try:
        req = parse_native(body, max_inputs=8, default_truncate="error")
    except GGUFEmbedError as exc:
        check_error(exc)
        return
    assert 1 <= req.n_inputs <= 8

"""Rerank over HTTP: every request shape, the errors, and the clients RAG stacks use.

The Cohere SDK (which LangChain's and LlamaIndex's Cohere rerankers call) runs for real with its
base URL pointed here. Open WebUI's external reranker, Dify's OpenAI-compatible rerank and the
LangChain / LlamaIndex Jina rerankers are plain ``requests`` calls in their sources; they are
reproduced here request for request (URL, headers, body) with the same response handling.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import requests

from gguf_embed.server import create_app
from tools.models.rerankers import DOCUMENTS, QUERY

from .helpers import RunningServer

KEY = "rerank-key"
H = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def server(minilm_embedder, qwen_reranker, cross_reranker):
    app = create_app([minilm_embedder, qwen_reranker, cross_reranker], api_key=KEY, max_inputs=64,
                     max_body_bytes=2**20)
    with RunningServer(app) as srv:
        yield srv.wait_ready()


def post(server, path, body, headers=H):
    return httpx.post(server.url + path, json=body, headers=headers, timeout=60)


def expected(rr, docs=DOCUMENTS, **kw):
    return rr.rerank(QUERY, docs, **kw)


def test_v1_jina_cohere_shape(server, qwen_reranker):
    r = post(server, "/v1/rerank", {"model": qwen_reranker.name, "query": QUERY,
                                    "documents": [{"text": d} for d in DOCUMENTS], "top_n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == qwen_reranker.name and body["object"] == "list"
    want = expected(qwen_reranker, top_n=3)
    assert [x["index"] for x in body["results"]] == [i for i, _ in want]
    # the server's context and this one keep different prefixes from earlier requests (engine/kept.py):
    # the same scores within float noise (1.3e-6 seen), not bit for bit
    np.testing.assert_allclose([x["relevance_score"] for x in body["results"]], [s for _, s in want], atol=1e-5)
    assert all(x["document"]["text"] == DOCUMENTS[x["index"]] for x in body["results"])
    n_tokens = sum(len(s) for s in qwen_reranker.tokenize_pairs(QUERY, DOCUMENTS))
    assert body["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}


def test_rerank_alias_v2_and_tei_shapes(server, cross_reranker):
    name = cross_reranker.name
    want = expected(cross_reranker)
    r = post(server, "/rerank", {"model": name, "query": QUERY, "documents": DOCUMENTS, "return_documents": False})
    assert [x["index"] for x in r.json()["results"]] == [i for i, _ in want]
    assert "document" not in r.json()["results"][0]
    r = post(server, "/v2/rerank", {"model": name, "query": QUERY, "documents": DOCUMENTS, "top_n": 2})
    assert set(r.json()) == {"id", "results", "meta"} and len(r.json()["results"]) == 2
    r = post(server, "/rerank", {"model": name, "query": QUERY, "texts": DOCUMENTS, "raw_scores": True, "return_text": True})
    body = r.json()
    raw = expected(cross_reranker, raw_scores=True)
    assert isinstance(body, list) and [x["index"] for x in body] == [i for i, _ in raw]
    np.testing.assert_allclose([x["score"] for x in body], [s for _, s in raw], atol=1e-6)
    assert body[0]["text"] == DOCUMENTS[body[0]["index"]]


def test_instruction_extension(server, qwen_reranker):
    instr = "Find passages about botany"
    r = post(server, "/v1/rerank", {"model": qwen_reranker.name, "query": QUERY, "documents": DOCUMENTS,
                                    "instruction": instr})
    want = qwen_reranker.rerank(QUERY, DOCUMENTS, instruction=instr)
    np.testing.assert_allclose([x["relevance_score"] for x in r.json()["results"]], [s for _, s in want], atol=1e-6)


@pytest.mark.parametrize("body,status,param", [
    ({"documents": ["a"]}, 400, "query"),
    ({"query": "q", "documents": []}, 400, "documents"),
    ({"query": "q", "documents": ["a", 5]}, 400, "documents"),
    ({"query": "q", "documents": "a"}, 400, "documents"),
    ({"query": "q", "documents": ["a"] * 65}, 413, "documents"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n"),
    ({"query": "q", "documents": ["a"], "truncate": "sideways"}, 400, "truncate"),
    ({"query": "q", "texts": ["a"], "truncate": "yes"}, 400, "truncate"),
    ({"query": "q", "documents": ["a"], "model": "nope"}, 404, "model"),
])
def test_client_mistakes_are_4xx_in_the_envelope(server, qwen_reranker, body, status, param):
    body = {"model": qwen_reranker.name, **body}
    r = post(server, "/v1/rerank", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"]


def test_wrong_task_and_too_long_input(server, qwen_reranker, minilm_embedder, cross_reranker):
    r = post(server, "/v1/rerank", {"model": minilm_embedder.name, "query": "q", "documents": ["a"]})
    assert r.status_code == 400 and "not a reranker" in r.json()["error"]["message"]
    r = post(server, "/v1/embeddings", {"model": qwen_reranker.name, "input": ["a"]})
    assert r.status_code == 400 and "is a reranker" in r.json()["error"]["message"]
    long_doc = "word " * 1000
    r = post(server, "/v1/rerank", {"model": cross_reranker.name, "query": "q", "documents": [long_doc], "truncate": "error"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    r = post(server, "/rerank", {"model": cross_reranker.name, "query": "q", "texts": [long_doc]})  # TEI: truncate false
    assert r.status_code == 400
    r = post(server, "/v1/rerank", {"model": cross_reranker.name, "query": "q", "documents": [long_doc]})
    assert r.status_code == 200  # the default cuts the document's end
    assert post(server, "/v1/rerank", {"query": "q", "documents": ["a"]}, headers={}).status_code == 401


def test_models_say_their_task(server, qwen_reranker, minilm_embedder):
    data = {m["id"]: m for m in httpx.get(server.url + "/v1/models", headers=H).json()["data"]}
    assert data[qwen_reranker.name]["task"] == "rerank" and data[minilm_embedder.name]["task"] == "embed"


def test_concurrent_requests_keep_their_results(server, qwen_reranker):
    queries = [QUERY, "stock market news", "bread recipe"]
    want = {q: qwen_reranker.rerank(q, DOCUMENTS) for q in queries}

    def one(q):
        r = post(server, "/v1/rerank", {"model": qwen_reranker.name, "query": q, "documents": DOCUMENTS})
        return q, [(x["index"], x["relevance_score"]) for x in r.json()["results"]]

    with ThreadPoolExecutor(8) as pool:
        for q, got in pool.map(one, queries * 2):
            assert [i for i, _ in got] == [i for i, _ in want[q]]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in want[q]], atol=1e-5)


# --- the clients ------------------------------------------------------------------


def test_cohere_sdk_v1_and_v2(server, cross_reranker):
    cohere = pytest.importorskip("cohere")
    want = expected(cross_reranker, top_n=3)
    v1 = cohere.Client(api_key=KEY, base_url=server.url)
    res = v1.rerank(model=cross_reranker.name, query=QUERY, documents=DOCUMENTS, top_n=3)
    assert [(x.index, round(x.relevance_score, 6)) for x in res.results] == [(i, round(s, 6)) for i, s in want]
    v2 = cohere.ClientV2(api_key=KEY, base_url=server.url)
    res = v2.rerank(model=cross_reranker.name, query=QUERY, documents=DOCUMENTS, top_n=3)
    assert [x.index for x in res.results] == [i for i, _ in want]


def test_open_webui_external_reranker(server, cross_reranker):
    # open_webui/retrieval/models/external.py: ExternalReranker.predict
    docs = DOCUMENTS
    payload = {"model": cross_reranker.name, "query": QUERY, "documents": docs, "top_n": len(docs)}
    r = requests.post(f"{server.url}/v1/rerank", headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {KEY}"}, json=payload)
    r.raise_for_status()
    data = r.json()
    scores = [x["relevance_score"] for x in sorted(data["results"], key=lambda x: x["index"])]
    np.testing.assert_allclose(scores, cross_reranker.score(QUERY, docs).scores, atol=1e-6)


def test_dify_openai_compatible_rerank(server, cross_reranker):
    # dify-official-plugins models/openai_api_compatible/models/rerank/rerank.py: _invoke
    endpoint_url = f"{server.url}/v1/".rstrip("/")
    payload = {"model": cross_reranker.name, "query": QUERY, "documents": DOCUMENTS, "top_n": 3}
    r = requests.post(f"{endpoint_url}/rerank", headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {KEY}"}, json=payload, timeout=60)
    r.raise_for_status()
    docs = [(x.get("index", 0), x.get("relevance_score", 0.0)) for x in r.json().get("results", [])]
    docs.sort(key=lambda d: d[1], reverse=True)
    assert [i for i, _ in docs] == [i for i, _ in expected(cross_reranker, top_n=3)]


@pytest.mark.parametrize("top_n", [3, None])
def test_jina_rerankers_langchain_and_llamaindex(server, cross_reranker, top_n):
    # langchain_community JinaRerank.rerank and llama_index JinaRerank._postprocess_nodes, with
    # their API URL constant pointed here; LangChain sends top_n null for "all"
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {KEY}", "Accept-Encoding": "identity",
                            "Content-type": "application/json", "user-agent": "langchain"})
    data = {"query": QUERY, "documents": DOCUMENTS, "model": cross_reranker.name, "top_n": top_n}
    resp = session.post(f"{server.url}/v1/rerank", json=data).json()
    assert "results" in resp
    got = [(x["index"], x["relevance_score"]) for x in resp["results"]]
    want = expected(cross_reranker, top_n=top_n)
    assert [i for i, _ in got] == [i for i, _ in want]

"""Ollama's API on `gguf-embed serve`, driven by the real `ollama` client and LangChain's
OllamaEmbeddings; model names as Ollama, llama-server and TEI resolve them (any name reaches the
one model of a task, `--strict-model-names`, `--alias`); every mistake a 4xx in Ollama's shape."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gguf_embed.errors import GGUFEmbedError
from gguf_embed.server import create_app
from gguf_embed.server.app import ServerOptions
from gguf_embed.server.ollama import OllamaEmbed, parse_ollama_embed
from tools.texts import VARIED_TEXTS

from .helpers import RunningServer, cos
from .test_hostile_requests import JSON, TEXT, check_error

TEXTS = VARIED_TEXTS[:8]


@pytest.fixture(scope="module")
def server(qwen_embedder, qwen_reranker):
    """One embedding model and one reranker: any model name reaches the embedding model."""
    with RunningServer(create_app([qwen_embedder, qwen_reranker], max_inputs=64)) as srv:
        yield srv.wait_ready()


@pytest.fixture(scope="module")
def strict(minilm_embedder, qwen_embedder):
    options = ServerOptions(strict_model_names=True, aliases=(("text-embedding-3-small", minilm_embedder.name),))
    with RunningServer(create_app([minilm_embedder, qwen_embedder], options=options)) as srv:
        yield srv.wait_ready()


@pytest.fixture(scope="module")
def client(server):
    import ollama

    return ollama.Client(host=server.url)


def test_ollama_client_embed(client, qwen_embedder):
    name = f"{qwen_embedder.name}:latest"
    expect = qwen_embedder.embed(TEXTS)
    resp = client.embed(model=name, input=TEXTS)
    assert cos(np.array(resp.embeddings), expect.embeddings).min() >= 0.99999
    assert resp.model == qwen_embedder.name
    assert resp.prompt_eval_count == int(expect.token_counts.sum())
    assert resp.total_duration > 0 and resp.load_duration == 0
    one = client.embed(model=qwen_embedder.name, input=TEXTS[0])
    assert len(one.embeddings) == 1 and cos(np.array(one.embeddings[0]), expect.embeddings[0])[0] >= 0.99999
    cut = client.embed(model=name, input=TEXTS, dimensions=32)
    assert np.array(cut.embeddings).shape == (len(TEXTS), 32)
    assert cos(np.array(cut.embeddings), qwen_embedder.embed(TEXTS, dimensions=32).embeddings).min() >= 0.99999
    full = client.embed(model=name, input=TEXTS[:1], dimensions=qwen_embedder.dimensions + 10)  # Ollama: no cut
    assert len(full.embeddings[0]) == qwen_embedder.dimensions
    assert client.embed(model=name, input=[]).embeddings == []  # Ollama's way to load a model


def test_ollama_client_legacy_embeddings(client, qwen_embedder):
    resp = client.embeddings(model="any-name", prompt=TEXTS[1])
    assert cos(np.array(resp.embedding), qwen_embedder.embed(TEXTS[1:2]).embeddings)[0] >= 0.99999
    assert list(client.embeddings(model="any-name", prompt="").embedding) == []


def test_ollama_client_list_show_ps(client, server, qwen_embedder, qwen_reranker):
    listed = client.list().models
    assert [m.model for m in listed] == [f"{qwen_embedder.name}:latest", f"{qwen_reranker.name}:latest"]
    details = listed[0].details
    assert (details.format, details.family, details.quantization_level) == ("gguf", "qwen3", "F32")
    assert details.parameter_size and listed[0].size == qwen_embedder.info.path.stat().st_size
    shown = client.show(qwen_embedder.name)
    assert shown.modelinfo["qwen3.embedding_length"] == qwen_embedder.dimensions
    assert shown.modelinfo["qwen3.context_length"] == qwen_embedder.max_tokens
    assert shown.modelinfo["general.parameter_count"] > 0 and shown.capabilities == ["embedding"]
    assert shown.details.family == "qwen3"
    running = client.ps().models
    assert {m.model for m in running} == {m.model for m in listed}
    assert running[0].context_length == qwen_embedder.max_tokens
    assert httpx.get(server.url + "/api/version").json()["version"]
    assert httpx.get(server.url + "/").text.startswith("Ollama is running")


def test_langchain_ollama_embeddings(server, qwen_embedder):
    from langchain_ollama import OllamaEmbeddings

    lc = OllamaEmbeddings(model="qwen3-embedding", base_url=server.url)
    docs = lc.embed_documents(TEXTS)
    assert cos(np.array(docs), qwen_embedder.embed(TEXTS).embeddings).min() >= 0.99999
    q = lc.embed_query("what is the capital of Australia?")
    assert cos(q, qwen_embedder.embed(["what is the capital of Australia?"]).embeddings)[0] >= 0.99999


def test_truncation(server, qwen_embedder):
    long_text = "word " * (qwen_embedder.max_tokens + 50)
    r = httpx.post(server.url + "/api/embed", json={"model": "m", "input": long_text}, timeout=60)
    assert r.status_code == 200
    expect = qwen_embedder.embed([long_text], truncate="end").embeddings
    assert cos(np.array(r.json()["embeddings"]), expect)[0] >= 0.99999
    r = httpx.post(server.url + "/api/embed", json={"model": "m", "input": long_text, "truncate": False})
    assert r.status_code == 400 and "exceeds the context length" in r.json()["error"]


def test_any_name_reaches_the_one_model_of_its_task(server, qwen_embedder, qwen_reranker):
    from openai import OpenAI

    oa = OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    resp = oa.embeddings.create(model="text-embedding-3-small", input=TEXTS[:3], encoding_format="float")
    assert resp.model == qwen_embedder.name
    assert cos(np.array([d.embedding for d in resp.data]), qwen_embedder.embed(TEXTS[:3]).embeddings).min() >= 0.99999
    r = httpx.post(server.url + "/v1/rerank", json={"model": "rerank-english-v3.0", "query": "q",
                                                     "documents": ["a", "b"]})
    assert r.status_code == 200 and r.json()["model"] == qwen_reranker.name


def test_strict_names_aliases_and_ollama_forms(strict, minilm_embedder, qwen_embedder):
    import ollama

    client = ollama.Client(host=strict.url)
    for name in (minilm_embedder.name, f"{minilm_embedder.name}:latest", f"library/{minilm_embedder.name.upper()}",
                 "text-embedding-3-small", "text-embedding-3-small:latest"):
        assert client.embed(model=name, input="hi").model == minilm_embedder.name, name
    assert client.embed(model=f"{qwen_embedder.name}:latest", input="hi").model == qwen_embedder.name
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="nomic-embed-text", input="hi")
    assert err.value.status_code == 404 and "nomic-embed-text" in err.value.error
    r = httpx.post(strict.url + "/v1/embeddings", json={"model": "gpt-4", "input": "a"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_alias_to_a_model_not_served_fails_loading(minilm_embedder):
    app = create_app([minilm_embedder], options=ServerOptions(aliases=(("x", "not-served"),)))
    with RunningServer(app) as srv:
        with pytest.raises(AssertionError):
            srv.wait_ready(timeout=1)
        health = httpx.get(srv.url + "/health").json()
    assert health["status"] == "error" and "--alias x=not-served" in health["error"]


HOSTILE = [
    # (method, path, body, status, words in the error)
    ("POST", "/api/embed", b"{not json", 400, "JSON"),
    ("POST", "/api/embed", b"", 400, "JSON"),
    ("POST", "/api/embed", [1], 400, "object"),
    ("POST", "/api/embed", {"input": 5}, 400, "invalid input type"),
    ("POST", "/api/embed", {"input": ["a", 1]}, 400, "invalid input type"),
    ("POST", "/api/embed", {"input": ["a", ""]}, 400, "empty"),
    ("POST", "/api/embed", {"input": "a\ud800"}, 400, "surrogate"),
    ("POST", "/api/embed", {"input": "a", "truncate": "yes"}, 400, "truncate"),
    ("POST", "/api/embed", {"input": "a", "dimensions": -1}, 400, "dimensions"),
    ("POST", "/api/embed", {"input": "a", "dimensions": 2}, 400, "dimensions"),
    ("POST", "/api/embed", {"input": "a", "options": []}, 400, "options"),
    ("POST", "/api/embed", {"input": "a", "keep_alive": [5]}, 400, "keep_alive"),
    ("POST", "/api/embed", {"model": 3, "input": "a"}, 400, "model"),
    ("POST", "/api/embed", {"input": ["a"] * 65}, 413, "65"),
    ("POST", "/api/embeddings", {"prompt": ["a"]}, 400, "prompt"),
    ("POST", "/api/show", {}, 400, "model is required"),
    ("POST", "/api/show", {"model": 1}, 400, "model"),
    ("POST", "/api/generate", {"model": "m", "prompt": "hi"}, 400, "text generation is not supported"),
    ("POST", "/api/chat", {"model": "m", "messages": []}, 400, "chat is not supported"),
    ("POST", "/api/pull", {"model": "nomic-embed-text"}, 400, "ollama:NAME"),
    ("DELETE", "/api/delete", {"model": "m"}, 400, "deleting"),
    ("POST", "/api/nothing", {}, 404, "Not Found"),
    ("POST", "/api/tags", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("method,path,body,status,words", HOSTILE)
def test_mistakes_are_4xx_in_ollamas_shape(server, method, path, body, status, words):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.request(method, server.url + path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and words in r.json()["error"], r.text


OLLAMA_FIELDS = {"model": TEXT, "input": TEXT | st.lists(TEXT, max_size=4) | JSON, "truncate": st.booleans() | JSON,
                 "dimensions": st.integers(-2, 400) | JSON, "options": st.dictionaries(TEXT, JSON) | JSON,
                 "keep_alive": TEXT | st.integers() | JSON, "prompt": TEXT | JSON}


@settings(max_examples=300, deadline=None)
@given(body=JSON | st.fixed_dictionaries({}, optional=OLLAMA_FIELDS), legacy=st.booleans())
def test_parse_ollama_embed_takes_any_body(body, legacy):
    raw = json.dumps(body).encode()
    try:
        req = parse_ollama_embed(raw, max_inputs=8, legacy=legacy)
    except GGUFEmbedError as exc:
        check_error(exc)
        return
    assert isinstance(req, OllamaEmbed) and len(req.texts) <= 8
    for text in req.texts:
        assert text and text.encode("utf-8")


@settings(max_examples=60, deadline=None)
@given(body=st.fixed_dictionaries({}, optional=OLLAMA_FIELDS),
       path=st.sampled_from(["/api/embed", "/api/embeddings", "/api/show"]))
def test_the_app_answers_any_ollama_body_with_2xx_or_4xx(server, body, path):
    r = httpx.post(server.url + path, content=json.dumps(body).encode(), timeout=60,
                   headers={"content-type": "application/json"})
    assert r.status_code < 500, (path, body, r.text)
    if r.status_code >= 400:
        assert list(r.json()) == ["error"], r.text


def test_serve_refuses_a_malformed_alias():
    from click.testing import CliRunner

    from gguf_embed.cli import main

    result = CliRunner().invoke(main, ["serve", "-m", "all-minilm-l6-v2", "--alias", "no-equals-sign"])
    assert result.exit_code == 2 and "NAME=MODEL" in result.output

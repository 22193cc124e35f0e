"""The HTTP server, driven running, with the real openai SDK, LangChain and plain HTTP."""

from __future__ import annotations

import base64
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from gguf_embed.server import create_app
from tools.texts import VARIED_TEXTS

from .helpers import RunningServer, cos

KEY = "test-key-123"


@pytest.fixture(scope="module")
def server(minilm_embedder, qwen_embedder):
    app = create_app([minilm_embedder, qwen_embedder], api_key=KEY, max_inputs=1000, max_body_bytes=2**20)
    with RunningServer(app) as srv:
        yield srv.wait_ready()


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


def auth():
    return {"Authorization": f"Bearer {KEY}"}




def test_openai_sdk_base64_and_float(client, minilm_embedder, qwen_embedder):
    for emb in (minilm_embedder, qwen_embedder):
        texts = VARIED_TEXTS[:20]
        expect = emb.embed(texts).embeddings
        default = client.embeddings.create(model=emb.name, input=texts)  # the SDK asks for base64
        floats = client.embeddings.create(model=emb.name, input=texts, encoding_format="float")
        for resp in (default, floats):
            got = np.array([d.embedding for d in resp.data])
            assert [d.index for d in resp.data] == list(range(len(texts)))
            assert cos(got, expect).min() >= 0.99999
            assert resp.model == emb.name
            assert resp.usage.prompt_tokens == resp.usage.total_tokens == int(emb.embed(texts).token_counts.sum())


def test_file_name_is_accepted_as_model(client, minilm_embedder):
    resp = client.embeddings.create(model=minilm_embedder.info.path.name, input="hello")
    assert resp.model == minilm_embedder.name and len(resp.data[0].embedding) == 384


def test_langchain_openai_embeddings(server, qwen_embedder):
    from langchain_openai import OpenAIEmbeddings

    lc = OpenAIEmbeddings(model=qwen_embedder.name, base_url=server.url + "/v1", api_key=KEY,
                          check_embedding_ctx_length=False, max_retries=0)
    docs = lc.embed_documents(VARIED_TEXTS[:10])
    assert cos(np.array(docs), qwen_embedder.embed(VARIED_TEXTS[:10]).embeddings).min() >= 0.99999
    q = lc.embed_query("what is the capital of Australia?")
    assert cos(q, qwen_embedder.embed(["what is the capital of Australia?"]).embeddings)[0] >= 0.99999


def test_500_inputs_keep_order_and_count(server, minilm_embedder):
    rng = random.Random(1)
    texts = [f"{rng.choice(VARIED_TEXTS)} ({i})" for i in range(500)]
    r = httpx.post(server.url + "/v1/embeddings", headers=auth(), timeout=120,
                   json={"model": minilm_embedder.name, "input": texts, "encoding_format": "base64"})
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["index"] for d in data] == list(range(500))
    got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])
    assert cos(got, minilm_embedder.embed(texts).embeddings).min() >= 0.99999


def test_dimensions_input_type_instruction(client, qwen_embedder):
    texts = VARIED_TEXTS[:6]
    resp = client.embeddings.create(model=qwen_embedder.name, input=texts, dimensions=32,
                                    extra_body={"input_type": "query"})
    got = np.array([d.embedding for d in resp.data])
    assert got.shape == (6, 32)
    assert cos(got, qwen_embedder.embed(texts, input_type="query", dimensions=32).embeddings).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    resp = client.embeddings.create(model=qwen_embedder.name, input=texts, extra_body={"instruction": "Find code"})
    expect = qwen_embedder.embed(texts, instruction="Find code").embeddings
    assert cos(np.array([d.embedding for d in resp.data]), expect).min() >= 0.99999


def test_token_id_input(client, qwen_embedder):
    texts = VARIED_TEXTS[:3]
    ids = [qwen_embedder.session.model.tokenize(t, add_special=False).tolist() for t in texts]
    expect = qwen_embedder.embed(texts).embeddings
    many = client.embeddings.create(model=qwen_embedder.name, input=ids)
    assert cos(np.array([d.embedding for d in many.data]), expect).min() >= 0.99999
    one = client.embeddings.create(model=qwen_embedder.name, input=ids[0])
    assert cos(np.array(one.data[0].embedding), expect[0])[0] >= 0.99999


def test_models_health_metrics(server, minilm_embedder, qwen_embedder):
    models = httpx.get(server.url + "/v1/models", headers=auth()).json()
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} == {minilm_embedder.name, qwen_embedder.name}
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    text = httpx.get(server.url + "/metrics", headers=auth()).text
    for name in ("gguf_embed_requests_total", "gguf_embed_inputs_total", "gguf_embed_tokens_total",
                 "gguf_embed_request_seconds_bucket", "gguf_embed_batch_sequences_bucket", "gguf_embed_errors_total"):
        assert name in text
    assert httpx.get(server.url + "/metrics").status_code == 401


def _hostile_cases(minilm, qwen):
    m = minilm.name
    long_text = "word " * 3000
    return [
        # (description, method, path, headers, body (bytes or json), status, param or code)
        ("invalid JSON", "POST", "/v1/embeddings", {}, b"{not json", 400, None),
        ("JSON array body", "POST", "/v1/embeddings", {}, [1, 2], 400, None),
        ("JSON string body", "POST", "/v1/embeddings", {}, "hello", 400, None),
        ("missing input", "POST", "/v1/embeddings", {}, {"model": m}, 400, "input"),
        ("null input", "POST", "/v1/embeddings", {}, {"model": m, "input": None}, 400, "input"),
        ("empty string", "POST", "/v1/embeddings", {}, {"model": m, "input": ""}, 400, "input"),
        ("empty list", "POST", "/v1/embeddings", {}, {"model": m, "input": []}, 400, "input"),
        ("empty string in list", "POST", "/v1/embeddings", {}, {"model": m, "input": ["a", ""]}, 400, "input"),
        ("null item", "POST", "/v1/embeddings", {}, {"model": m, "input": ["a", None]}, 400, "input"),
        ("number input", "POST", "/v1/embeddings", {}, {"model": m, "input": 3.5}, 400, "input"),
        ("object input", "POST", "/v1/embeddings", {}, {"model": m, "input": {"a": 1}}, 400, "input"),
        ("mixed list", "POST", "/v1/embeddings", {}, {"model": m, "input": ["a", 1.5]}, 400, "input"),
        ("bool token ids", "POST", "/v1/embeddings", {}, {"model": m, "input": [True, False]}, 400, "input"),
        ("empty token list", "POST", "/v1/embeddings", {}, {"model": m, "input": [[1, 2], []]}, 400, "input"),
        ("float token ids", "POST", "/v1/embeddings", {}, {"model": m, "input": [[1.5, 2]]}, 400, "input"),
        ("token id out of vocab", "POST", "/v1/embeddings", {}, {"model": m, "input": [10**9]}, 400, "input"),
        ("negative token id", "POST", "/v1/embeddings", {}, {"model": m, "input": [-1]}, 400, "input"),
        ("unknown model", "POST", "/v1/embeddings", {}, {"model": "gpt-4", "input": "a"}, 404, "model"),
        ("model not a string", "POST", "/v1/embeddings", {}, {"model": 7, "input": "a"}, 400, "model"),
        ("model missing with two served", "POST", "/v1/embeddings", {}, {"input": "a"}, 400, "model"),
        ("bad encoding_format", "POST", "/v1/embeddings", {}, {"model": m, "input": "a", "encoding_format": "hex"}, 400, "encoding_format"),
        ("dimensions too small", "POST", "/v1/embeddings", {}, {"model": qwen.name, "input": "a", "dimensions": 2}, 400, "dimensions"),
        ("dimensions on non-Matryoshka", "POST", "/v1/embeddings", {}, {"model": m, "input": "a", "dimensions": 100}, 400, "dimensions"),
        ("dimensions as string", "POST", "/v1/embeddings", {}, {"model": m, "input": "a", "dimensions": "64"}, 400, "dimensions"),
        ("bad input_type", "POST", "/v1/embeddings", {}, {"model": m, "input": "a", "input_type": "passage"}, 400, "input_type"),
        ("instruction on MiniLM", "POST", "/v1/embeddings", {}, {"model": m, "input": "a", "instruction": "x"}, 400, "instruction"),
        ("bad truncate", "POST", "/v1/embeddings", {}, {"model": m, "input": "a", "truncate": "middle"}, 400, "truncate"),
        ("user not a string", "POST", "/v1/embeddings", {}, {"model": m, "input": "a", "user": 5}, 400, "user"),
        ("over-long input", "POST", "/v1/embeddings", {}, {"model": m, "input": long_text}, 400, "input"),
        ("too many inputs", "POST", "/v1/embeddings", {}, {"model": m, "input": ["a"] * 1001}, 413, "input"),
        ("oversize body", "POST", "/v1/embeddings", {}, {"model": m, "input": "x" * (2**20 + 10)}, 413, None),
        ("no API key", "POST", "/v1/embeddings", {"Authorization": ""}, {"model": m, "input": "a"}, 401, None),
        ("wrong API key", "POST", "/v1/embeddings", {"Authorization": "Bearer nope"}, {"model": m, "input": "a"}, 401, None),
        ("wrong auth scheme", "POST", "/v1/embeddings", {"Authorization": f"Basic {KEY}"}, {"model": m, "input": "a"}, 401, None),
        ("unknown route", "POST", "/v1/completions", {}, {"model": m, "input": "a"}, 404, None),
        ("wrong method", "GET", "/v1/embeddings", {}, None, 405, None),
        ("deeply nested JSON", "POST", "/v1/embeddings", {}, b"[" * 100000 + b"]" * 100000, 400, None),
        ("non-UTF-8 body", "POST", "/v1/embeddings", {}, b"\xff\xfe{", 400, None),
    ]


def test_hostile_requests_get_4xx_envelopes(server, minilm_embedder, qwen_embedder):
    cases = _hostile_cases(minilm_embedder, qwen_embedder)
    assert len(cases) >= 25
    for desc, method, path, headers, body, status, param in cases:
        h = {**auth(), **headers}
        if isinstance(body, bytes):
            r = httpx.request(method, server.url + path, headers={**h, "Content-Type": "application/json"},
                              content=body, timeout=30)
        elif body is None:
            r = httpx.request(method, server.url + path, headers=h, timeout=30)
        else:
            r = httpx.request(method, server.url + path, headers=h, json=body, timeout=30)
        assert r.status_code == status, (desc, r.status_code, r.text[:200])
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}, desc
        assert err["message"] and isinstance(err["message"], str), desc
        if param is not None:
            assert err["param"] == param, (desc, err)
    # still up and still right
    ok = httpx.post(server.url + "/v1/embeddings", headers=auth(), json={"model": minilm_embedder.name, "input": "hi"})
    assert ok.status_code == 200
    assert cos(np.array(ok.json()["data"][0]["embedding"]), minilm_embedder.embed(["hi"]).embeddings)[0] >= 0.99999
    metrics = httpx.get(server.url + "/metrics", headers=auth()).text
    assert 'gguf_embed_errors_total{kind="invalid_api_key"}' in metrics


def test_concurrent_clients_get_their_own_vectors(server, minilm_embedder, qwen_embedder):
    rng = random.Random(7)
    pool = [f"{t} [{i}]" for i, t in enumerate(VARIED_TEXTS * 3)]
    ref = {emb.name: dict(zip(pool, emb.embed(pool).embeddings)) for emb in (minilm_embedder, qwen_embedder)}
    names = list(ref)
    stop = time.time() + 4.0
    failures, counts = [], []

    def worker(seed):
        r = random.Random(seed)
        n = 0
        with httpx.Client(timeout=60, headers=auth()) as http:
            while time.time() < stop:
                model = r.choice(names)
                texts = r.sample(pool, r.choice([1, 1, 2, 5, 16, 40]))
                resp = http.post(server.url + "/v1/embeddings", json={"model": model, "input": texts})
                if resp.status_code != 200:
                    failures.append(resp.text)
                    continue
                got = np.array([d["embedding"] for d in resp.json()["data"]])
                expect = np.stack([ref[model][t] for t in texts])
                if len(got) != len(texts) or cos(got, expect).min() < 0.99999:
                    failures.append(f"wrong vectors for {model}")
                n += 1
        counts.append(n)

    with ThreadPoolExecutor(32) as ex:
        list(ex.map(worker, [rng.random() for _ in range(32)]))
    assert not failures, failures[:3]
    assert sum(counts) >= 32
    assert httpx.get(server.url + "/health").status_code == 200


def test_small_request_is_not_starved_by_a_huge_one(minilm_embedder):
    app = create_app([minilm_embedder], max_batch_tokens=512, max_inputs=5000)
    big = [f"{VARIED_TEXTS[i % 50]} {VARIED_TEXTS[(i * 7) % 50]} ({i})" for i in range(1200)]
    with RunningServer(app) as srv:
        srv.wait_ready()
        times = {}

        def post(label, texts):
            t0 = time.perf_counter()
            r = httpx.post(srv.url + "/v1/embeddings", json={"input": texts}, timeout=300)
            assert r.status_code == 200
            times[label] = time.perf_counter() - t0

        t = threading.Thread(target=post, args=("big", big))
        t.start()
        time.sleep(0.3)
        post("small", ["a quick one"])
        small_done = time.perf_counter()
        t.join()
    assert times["small"] < times["big"] / 4, times
    assert small_done is not None


@pytest.mark.quick
def test_health_is_503_while_loading(minilm_gguf):
    from gguf_embed import Embedder

    release = threading.Event()

    def slow_loader():
        release.wait(30)
        return Embedder(minilm_gguf("F16"))

    with RunningServer(create_app([slow_loader])) as srv:
        assert httpx.get(srv.url + "/health").status_code == 503
        r = httpx.post(srv.url + "/v1/embeddings", json={"input": "a"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "loading"
        release.set()
        srv.wait_ready()
        assert httpx.post(srv.url + "/v1/embeddings", json={"input": "a"}).status_code == 200


def test_cors_only_when_asked(minilm_embedder, server):
    origin = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    r = httpx.options(server.url + "/v1/embeddings", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    with RunningServer(create_app([minilm_embedder], cors_origins=["http://localhost:3000"])) as srv:
        srv.wait_ready()
        r = httpx.options(srv.url + "/v1/embeddings", headers=origin)
        assert r.headers.get("access-control-allow-origin") == "http://localhost:3000"


@pytest.mark.quick
def test_serve_refuses_unknown_model_before_binding():
    from click.testing import CliRunner

    from gguf_embed.cli import main

    result = CliRunner().invoke(main, ["serve", "-m", "/nonexistent/model.gguf", "--port", "0"])
    assert result.exit_code != 0 and "does not exist" in result.output

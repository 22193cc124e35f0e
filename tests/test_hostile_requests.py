"""Property tests: whatever bytes a client sends, the request parsers return a request or raise a
``GGUFEmbedError`` with a 4xx status, and the real app answers 2xx or 4xx, never 5xx.

Bodies are arbitrary JSON (``st.recursive``) and objects with the routes' known keys holding
either plausible or arbitrary values; strings include lone surrogates; bodies are sent as ASCII
JSON (surrogates as ``\\ud800`` escapes), as UTF-8 or UTF-16 with the surrogates' bytes written
raw, or as random bytes.
"""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gguf_embed import choices
from gguf_embed.errors import GGUFEmbedError
from gguf_embed.server import create_app
from gguf_embed.server.embeddings import EmbeddingRequest, parse_request
from gguf_embed.server.rerank import RerankRequest, parse_rerank

CHARS = st.one_of(st.characters(exclude_categories=()),  # every code point, surrogates included
                  st.characters(categories=["Cs"]), st.sampled_from("a \n\x00é😀"))
TEXT = st.text(alphabet=CHARS, max_size=24)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(TEXT, kids, max_size=4),
                    max_leaves=12)
TOKEN_IDS = st.lists(st.integers(min_value=-3, max_value=40000) | st.integers(), min_size=0, max_size=6)
DOCUMENTS = st.lists(TEXT | st.fixed_dictionaries({"text": TEXT}) | JSON, max_size=4)


CLEAN = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=24)  # no surrogates


def known_fields(kind: str, models: st.SearchStrategy, text: st.SearchStrategy) -> dict[str, st.SearchStrategy]:
    """Plausible values for each known key of a route's body."""
    if kind == "embeddings":
        return {
            "input": text | st.lists(text, max_size=4) | TOKEN_IDS | st.lists(TOKEN_IDS, max_size=3),
            "model": models, "encoding_format": st.sampled_from(choices.ENCODING_FORMATS),
            "dimensions": st.integers(min_value=-1, max_value=400), "user": text,
            "input_type": st.sampled_from(choices.INPUT_TYPES), "instruction": text,
            "truncate": st.sampled_from(choices.TRUNCATE_POLICIES),
        }
    documents = st.lists(text | st.fixed_dictionaries({"text": text}), min_size=1, max_size=4)
    return {
        "query": text, "documents": documents, "texts": documents, "model": models, "instruction": text,
        "top_n": st.integers(min_value=-1, max_value=6), "return_documents": st.booleans(),
        "return_text": st.booleans(), "raw_scores": st.booleans(),
        "truncate": st.sampled_from([*choices.TRUNCATE_POLICIES, "END", "NONE", True, False]),
        "truncation_direction": st.sampled_from(["Right", "left", "up"]),
    }


def bodies(kind: str, models: st.SearchStrategy) -> st.SearchStrategy:
    """Arbitrary JSON; objects with the known keys holding anything; and nearly valid requests
    (the keys a request needs, with clean text, and the others plausible)."""
    hostile = {k: v | JSON | DOCUMENTS for k, v in known_fields(kind, models, TEXT).items()}
    plain = known_fields(kind, models, CLEAN)
    required = ("input", "model") if kind == "embeddings" else ("query", "documents", "model")
    nearly = st.fixed_dictionaries({k: plain[k] for k in required},
                                   optional={k: v for k, v in plain.items() if k not in required})
    return JSON | st.fixed_dictionaries({}, optional=hostile) | nearly


@st.composite
def raw_bodies(draw, kind: str, models: st.SearchStrategy = TEXT) -> bytes:
    value = draw(bodies(kind, models))
    how = draw(st.sampled_from(["ascii", "ascii", "utf-8", "utf-16", "bytes"]))
    if how == "bytes":
        return draw(st.binary(max_size=64))
    if how == "ascii":
        return json.dumps(value).encode()
    return json.dumps(value, ensure_ascii=False).encode(how, "surrogatepass")


def check_error(exc: GGUFEmbedError) -> None:
    assert 400 <= exc.status_code < 500, (exc.status_code, exc.message)
    json.dumps(exc.to_openai(), ensure_ascii=False, allow_nan=False).encode("utf-8")  # as the app renders it


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in strings_in(v)]
    if hasattr(value, "__dataclass_fields__"):
        return strings_in([getattr(value, f) for f in value.__dataclass_fields__])
    return []


@settings(max_examples=400, deadline=None)
@given(raw=raw_bodies("embeddings"))
def test_parse_request_takes_any_bytes(raw):
    try:
        req = parse_request(raw, max_inputs=8, default_truncate="error")
    except GGUFEmbedError as exc:
        check_error(exc)
        return
    assert isinstance(req, EmbeddingRequest) and 1 <= req.n_inputs <= 8
    for s in strings_in(req):
        s.encode("utf-8")  # everything that reaches the tokenizer can be encoded


@settings(max_examples=400, deadline=None)
@given(raw=raw_bodies("rerank"), shape=st.sampled_from(["v1", "v2"]))
def test_parse_rerank_takes_any_bytes(raw, shape):
    try:
        req = parse_rerank(raw, shape=shape, max_documents=8)
    except GGUFEmbedError as exc:
        check_error(exc)
        return
    assert isinstance(req, RerankRequest) and 1 <= len(req.documents) <= 8
    for s in strings_in(req):
        s.encode("utf-8")


# --- through the real app ---------------------------------------------------------------------

ROUTES = {"/v1/embeddings": "embeddings", "/embeddings": "embeddings", "/v1/rerank": "rerank",
          "/rerank": "rerank", "/v2/rerank": "rerank"}


@pytest.fixture(scope="module")
def app_client(minilm_embedder, qwen_reranker):
    app = create_app([minilm_embedder, qwen_reranker], max_inputs=8)
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.time() + 30
        while client.get("/health").status_code != 200:
            assert time.time() < deadline, "models did not load"
            time.sleep(0.05)
        yield client


@pytest.fixture(scope="module")
def requests_strategy(minilm_embedder, qwen_reranker):
    models = st.sampled_from([minilm_embedder.name, qwen_reranker.name])
    return st.sampled_from(sorted(ROUTES)).flatmap(
        lambda path: raw_bodies(ROUTES[path], models).map(lambda raw: (path, raw)))


@pytest.mark.slow
def test_the_app_answers_any_body_with_2xx_or_4xx(app_client, requests_strategy):
    seen: dict[int, int] = {}

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
    @given(request=requests_strategy)
    def check(request):
        path, raw = request
        r = app_client.post(path, content=raw, headers={"content-type": "application/json"})
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (path, raw, r.text)
        body = r.json()
        if r.status_code >= 400:
            assert set(body["error"]) == {"message", "type", "param", "code"}, body

    check()
    assert seen.get(200), seen  # some bodies got through to the models

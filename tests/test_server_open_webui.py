"""`gguf-embed serve --port PORT -m ollama:NAME` as a drop-in for Ollama under Open WebUI.

A store laid out as Ollama writes it is built in a temp folder (``OLLAMA_MODELS``), the real command
serves ``ollama:minilm`` from it on 127.0.0.1, and Open WebUI's requests to an Ollama connection are
replayed request for request (as backend/open_webui/routers/ollama.py and retrieval/utils.py send
them): the connection check (``GET /api/version``), the model list (``GET /api/tags`` and
``GET /api/ps``, with Open WebUI's JSON content type on a GET), ``POST /api/show``, the RAG engine's
``POST /api/embed`` (``{"input": [...], "model": ..., "truncate": true}``, an empty bearer token, an
optional prefix field), and the proxied ``/api/embed`` and ``/api/embeddings`` bodies (``model``,
``input``, ``truncate``, ``options``, ``keep_alive``). Vectors must equal ``gguf-embed encode``'s.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests
from click.testing import CliRunner

from gguf_embed.cli import main
from gguf_embed.model.gguf_file import sha256_file
from tools.texts import VARIED_TEXTS

from .helpers import cos, served
from .test_sources import build_ollama_store

REPO = Path(__file__).resolve().parent.parent
TEXTS = VARIED_TEXTS[:6]
#: what Open WebUI sends with every request to an Ollama connection that has no key
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer "}


@pytest.fixture(scope="module")
def store(tmp_path_factory, minilm_gguf):
    root = tmp_path_factory.mktemp("ollama-store")
    build_ollama_store(root, minilm_gguf("F16"), sha256_file(minilm_gguf("F16")))
    return root


@pytest.fixture(scope="module")
def ollama_url(store, tmp_path_factory):
    """The real command, ``gguf-embed serve --port PORT -m ollama:minilm``, in a process of its own."""
    env = {**os.environ, "OLLAMA_MODELS": str(store), "PYTHONPATH": str(REPO),
           "GGUF_EMBED_CACHE": str(tmp_path_factory.mktemp("cache") / "v.sqlite")}
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with served("-m", "ollama:minilm", "--threads", "1", env=env, log=log) as url:
        yield url


@pytest.fixture(scope="module")
def encoded(store, tmp_path_factory):
    """``gguf-embed encode`` of the same texts from the same store."""
    folder = tmp_path_factory.mktemp("encode")
    (folder / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    env = {"OLLAMA_MODELS": str(store)}
    result = CliRunner().invoke(main, ["encode", str(folder / "texts.txt"), "-m", "ollama:minilm", "-o",
                                       str(folder / "v.npy"), "--no-cache", "-q", "--threads", "1"], env=env)
    assert result.exit_code == 0, result.output
    return np.load(folder / "v.npy")


def test_connection_check_and_model_list(ollama_url):
    """Open WebUI's "verify connection" and model list: /api/version, /api/tags, /api/ps."""
    version = requests.get(ollama_url + "/api/version", headers={}).json()["version"]
    assert tuple(map(int, re.sub(r"^v|-.*", "", version).split(".")))  # how Open WebUI compares versions
    tags = requests.get(ollama_url + "/api/tags", headers={"Content-Type": "application/json"})
    assert tags.status_code == 200
    models = tags.json()["models"]
    assert [m["model"] for m in models] == ["minilm:latest"] and models[0]["name"] == "minilm:latest"
    assert models[0]["details"]["format"] == "gguf"
    ps = requests.get(ollama_url + "/api/ps", headers={"Content-Type": "application/json"}).json()["models"]
    assert [m["name"] for m in ps] == ["minilm:latest"]
    from datetime import datetime

    assert int(datetime.fromisoformat(ps[0]["expires_at"]).timestamp()) > time.time()
    shown = requests.post(ollama_url + "/api/show", headers=HEADERS, json={"model": "minilm:latest"})
    assert shown.status_code == 200 and shown.json()["model_info"]["bert.embedding_length"] == 384
    assert requests.get(ollama_url + "/").status_code == 200 and requests.head(ollama_url + "/").status_code == 200


@pytest.mark.parametrize("body", [
    {"input": TEXTS, "model": "minilm"},  # Open WebUI before 0.6.x
    {"input": TEXTS, "model": "minilm", "truncate": True},  # later versions
    {"input": TEXTS, "model": "minilm:latest", "truncate": True, "prefix": "unused"},  # RAG_EMBEDDING_PREFIX_FIELD_NAME
])
def test_rag_embedding_requests(ollama_url, encoded, body):
    """The RAG engine "Ollama": one POST /api/embed per batch of chunks, an empty bearer token."""
    r = requests.post(ollama_url + "/api/embed", headers=HEADERS, json=body, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    assert cos(np.array(data["embeddings"]), encoded).min() >= 0.99999
    assert data["model"] == "minilm:latest"
    one = requests.post(ollama_url + "/api/embed", headers=HEADERS, json={**body, "input": [TEXTS[2]]},
                        timeout=60).json()
    assert cos(np.array(one["embeddings"]), encoded[2:3])[0] >= 0.99999


def test_proxied_embed_and_embeddings(ollama_url, encoded):
    """Open WebUI's /ollama/api/embed and /ollama/api/embeddings forward the user's body without nulls."""
    body = {"model": "minilm:latest", "input": TEXTS, "truncate": True, "options": {"num_ctx": 512}, "keep_alive": "5m"}
    r = requests.post(ollama_url + "/api/embed", headers=HEADERS, data=json.dumps(body).encode())
    assert r.status_code == 200 and cos(np.array(r.json()["embeddings"]), encoded).min() >= 0.99999
    r = requests.post(ollama_url + "/api/embed", headers=HEADERS, json={"model": "minilm", "input": TEXTS[0],
                                                                      "keep_alive": -1})
    assert r.status_code == 200 and cos(np.array(r.json()["embeddings"]), encoded[:1])[0] >= 0.99999
    r = requests.post(ollama_url + "/api/embeddings", headers=HEADERS,
                   json={"model": "minilm", "prompt": TEXTS[1], "options": {}, "keep_alive": 0})
    assert r.status_code == 200 and cos(np.array(r.json()["embedding"]), encoded[1:2])[0] >= 0.99999

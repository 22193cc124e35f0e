"""LlamaIndex's Ollama and TEI embedding classes against `gguf-embed serve`, through their own APIs:
the same vectors as the Embedder on the same texts (documents and queries)."""

from __future__ import annotations

import pytest

from gguf_embed.server import create_app
from tools.texts import VARIED_TEXTS

from .helpers import RunningServer, cos

TEXTS = VARIED_TEXTS[:6]


@pytest.fixture(scope="module")
def server(minilm_embedder):
    with RunningServer(create_app([minilm_embedder], max_inputs=64)) as srv:
        yield srv.wait_ready()


def test_llamaindex_ollama_embedding(server, minilm_embedder):
    from llama_index.embeddings.ollama import OllamaEmbedding

    emb = OllamaEmbedding(model_name="all-minilm", base_url=server.url)
    docs = emb.get_text_embedding_batch(TEXTS)
    assert cos(docs, minilm_embedder.embed(TEXTS).embeddings).min() >= 0.99999
    query = emb.get_query_embedding(TEXTS[0])
    assert cos([query], minilm_embedder.embed(TEXTS[:1]).embeddings)[0] >= 0.99999


def test_llamaindex_text_embeddings_inference(server, minilm_embedder):
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    emb = TextEmbeddingsInference(model_name="all-minilm", base_url=server.url, timeout=60)
    docs = emb.get_text_embedding_batch(TEXTS)
    assert cos(docs, minilm_embedder.embed(TEXTS).embeddings).min() >= 0.99999

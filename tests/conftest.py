"""Shared fixtures: real and tiny models converted once per test session."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the tests never touch the user's vector cache
os.environ.setdefault("GGUF_EMBED_CACHE", os.path.join(tempfile.mkdtemp(prefix="gguf-embed-cache-"), "vectors.sqlite"))
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from gguf_embed.convert import convert_model  # noqa: E402
from tools.models.tiny import QUERY_PROMPT, build_tiny_qwen3, minilm_dir  # noqa: E402

from .helpers import per_quant  # noqa: E402


@pytest.fixture(scope="session")
def minilm_src():
    return minilm_dir()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="session")
def minilm_gguf(model_dir):
    """all-MiniLM-L6-v2 converted from the packaged safetensors, by quant type."""
    return per_quant(lambda q, out: convert_model("all-minilm-l6-v2", out, q).path, model_dir, "all-minilm-l6-v2",
                     "F16")


@pytest.fixture(scope="session")
def tiny_qwen_src(tmp_path_factory):
    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3") / "Tiny-Qwen3-Embedding")


@pytest.fixture(scope="session")
def tiny_qwen_gguf(tiny_qwen_src, model_dir):
    return per_quant(lambda q, out: convert_model(str(tiny_qwen_src), out, q, matryoshka_min=16).path, model_dir,
                     "tiny-qwen3", "F32")


@pytest.fixture(scope="session")
def st_minilm(minilm_src):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_src), device="cpu")


@pytest.fixture(scope="session")
def st_tiny_qwen(tiny_qwen_src):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_qwen_src), device="cpu")


@pytest.fixture(scope="session")
def minilm_embedder(minilm_gguf):
    from gguf_embed import Embedder

    with Embedder(minilm_gguf("F16")) as emb:
        yield emb


@pytest.fixture(scope="session")
def qwen_embedder(tiny_qwen_gguf):
    from gguf_embed import Embedder

    with Embedder(tiny_qwen_gguf("F32")) as emb:
        yield emb


__all__ = ["QUERY_PROMPT"]


# --- rerankers ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_reranker_src(tmp_path_factory):
    from tools.models.rerankers import build_tiny_qwen3_reranker

    return build_tiny_qwen3_reranker(tmp_path_factory.mktemp("tiny-rerank") / "Tiny-Qwen3-Reranker")


@pytest.fixture(scope="session")
def tiny_reranker_gguf(tiny_reranker_src, model_dir):
    return per_quant(lambda q, out: convert_model(str(tiny_reranker_src), out, q).path, model_dir,
                     "tiny-qwen3-reranker", "F32")


@pytest.fixture(scope="session")
def cross_encoder_src(tmp_path_factory):
    from tools.models.rerankers import build_minilm_cross_encoder

    return build_minilm_cross_encoder(tmp_path_factory.mktemp("cross") / "minilm-cross-encoder")


@pytest.fixture(scope="session")
def cross_encoder_gguf(cross_encoder_src, model_dir):
    return convert_model(str(cross_encoder_src), model_dir / "minilm-cross-encoder-F32.gguf", "F32").path


@pytest.fixture(scope="session")
def qwen_reranker(tiny_reranker_gguf):
    from gguf_embed.reranker import Reranker

    with Reranker(tiny_reranker_gguf("F32")) as rr:
        yield rr


@pytest.fixture(scope="session")
def cross_reranker(cross_encoder_gguf):
    from gguf_embed.reranker import Reranker

    with Reranker(cross_encoder_gguf) as rr:
        yield rr

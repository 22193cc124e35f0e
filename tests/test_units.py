"""Pure unit tests: pooling, registry, text normalisation, public API."""

from __future__ import annotations

import numpy as np
import pytest

import gguf_embed
from gguf_embed.heads import pooling
from gguf_embed.text import normalize as textnorm
from gguf_embed.errors import GGUFEmbedError, InputTooLongError, ModelNotFoundError
from gguf_embed.registry import load_registry

pytestmark = pytest.mark.quick


def test_public_api():
    assert sorted(gguf_embed.__all__) == sorted([
        "Embedder", "EmbedResult", "ModelInfo", "ModelEntry", "Registry", "load_registry", "convert_model",
        "GGUFEmbedError", "InvalidInputError", "InputTooLongError", "ModelNotFoundError", "ModelLoadError",
        "ConversionError", "Reranker",
    ])
    for name in gguf_embed.__all__:
        assert hasattr(gguf_embed, name)


def test_pooling_rows_and_means():
    lengths = np.array([3, 1, 2])
    assert pooling.needed_rows(lengths, "last").tolist() == [2, 3, 5]
    assert pooling.needed_rows(lengths, "cls").tolist() == [0, 3, 4]
    assert pooling.needed_rows(lengths, "mean") is None
    hidden = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.testing.assert_allclose(pooling.pool(hidden, lengths, "mean"), [[2, 3], [6, 7], [9, 10]])
    np.testing.assert_allclose(pooling.pool(hidden[[2, 3, 5]], lengths, "last"), hidden[[2, 3, 5]])
    with pytest.raises(ValueError):
        pooling.pool(hidden, lengths, "last")
    with pytest.raises(ValueError):
        pooling.needed_rows(lengths, "max")


def test_normalize_and_cut():
    v = np.array([[3, 4, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    out = pooling.postprocess(v, None, True)
    np.testing.assert_allclose(out[0], [0.6, 0.8, 0, 0])
    assert np.all(out[1] == 0)  # no division by zero
    np.testing.assert_allclose(pooling.postprocess(v, 1, True)[0], [1.0])
    np.testing.assert_allclose(pooling.postprocess(v, 2, False)[0], [3, 4])
    assert pooling.postprocess(v, 2, False).flags["C_CONTIGUOUS"]


def test_registry_loads_and_validates(tmp_path):
    reg = load_registry()
    q = reg.get("qwen3-embedding-4b")
    assert (q.pooling, q.dims, q.matryoshka_min, q.max_tokens) == ("last", 2560, 32, 32768)
    assert q.prompts["query"].startswith("Instruct: ") and q.prompts["query"].endswith("\nQuery:")
    assert q.shape.layers == 36 and q.gguf_filename("q4_k_m") == "qwen3-embedding-4b-Q4_K_M.gguf"
    assert reg.default == "all-minilm-l6-v2" and reg.get(reg.default).package_dir() is not None
    with pytest.raises(ModelNotFoundError, match="unknown model 'nope'"):
        reg.get("nope")
    with pytest.raises(AttributeError):
        q.dims = 3  # frozen
    bad = tmp_path / "m.toml"
    bad.write_text('[models.x]\nhub_id="a/b"\narchitecture="gpt"\npooling="mean"\ndims=3\nmax_tokens=5\n'
                   'default_quant="F16"\nlicense="mit"\n')
    with pytest.raises(GGUFEmbedError, match="architecture must be one of"):
        load_registry(bad)
    bad.write_text('[models.x]\nhub_id="a/b"\n')
    with pytest.raises(GGUFEmbedError, match="lacks architecture"):
        load_registry(bad)
    bad.write_text("not toml [")
    with pytest.raises(GGUFEmbedError, match="not valid TOML"):
        load_registry(bad)


def test_text_normalizer():
    assert textnorm.normalizer_for_tokenizer_json({"normalizer": {"type": "BertNormalizer", "lowercase": True}}) == "nfd_strip_lower"
    assert textnorm.normalizer_for_tokenizer_json({"normalizer": {"type": "NFC"}}) == "nfc"
    assert textnorm.apply("nfd_strip_lower", "Café ÅNGSTRÖM") == "cafe angstrom"
    assert textnorm.apply("nfd_strip_lower", "서울") == "\u1109\u1165\u110b\u116e\u11af"
    assert textnorm.apply("none", "Café") == "Café"


def test_errors_map_to_openai_envelope():
    err = InputTooLongError("too long", param="input")
    assert err.status_code == 400
    assert err.to_openai() == {"error": {"message": "too long", "type": "invalid_request_error", "param": "input",
                                         "code": "context_length_exceeded"}}
    assert ModelNotFoundError("x").status_code == 404

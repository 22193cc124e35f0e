"""Architecture facts, one row per GGUF architecture llama.cpp runs for embedding or reranking,
and the Hugging Face classes each comes from.

Everything that differs between a decoder (Qwen3) and an encoder (BERT and its descendants) is
read from here: causal attention, the pooling a file without one gets, the token a rerank head
reads, whether an input must stay in one llama.cpp batch, and how ``models.toml`` families map to
GGUF files.

The rows follow llama.cpp as vendored by llama-cpp-python 0.3.36:
- ``causal``: ``hparams.causal_attn`` is true unless the file's ``{arch}.attention.causal`` says
  false (``llama-model.cpp``, ``load_hparams``) or the architecture forces it off
  (``models/gemma-embedding.cpp``: ``hparams.causal_attn = false``). Its converter writes false for
  every ``BertModel`` subclass (bert, nomic-bert, nomic-bert-moe, jina-bert-v2, jina-bert-v3,
  neo-bert, modern-bert) and for EuroBERT; the file's key wins over the row (``ModelInfo``).
- ``one_batch``: the encoders have no KV cache (``llama_model::create_memory`` returns none for
  them; ``llama-embed`` attends without one): a ubatch sees only itself, so llama.cpp asserts
  ``n_ubatch >= n_tokens`` for non-causal attention, and an input split over two batches would
  attend only within each piece. Such an input must stay whole in one batch.
- ``runs``: False where gguf-embed's engine (``llama_decode``) cannot run the file: ``t5encoder``
  is run through ``llama_encode`` only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Arch", "ARCHS", "arch", "known", "HF_ARCHITECTURES", "HF_MODEL_TYPES", "FAMILY_ARCH",
           "unknown_note", "DENSE_TENSORS", "DENSE_FLAG", "missing_dense_note"]


@dataclass(frozen=True)
class Arch:
    name: str  # general.architecture
    causal: bool  # attention over earlier tokens only (decoders)
    default_pooling: str  # what a file that names no pooling (or "none") gets
    rank_token: str  # the token a RANK head reads: "last" (decoders) or "cls" (encoders)
    one_batch: bool = False  # an input must stay whole in one llama.cpp batch (no KV cache between batches)
    tokenizer: str = ""  # what llama.cpp's converter writes for it: "wordpiece", "bpe", "spm", "" (several)
    runs: bool = True  # gguf-embed's engine can run it
    causal_fixed: bool = False  # llama.cpp sets ``causal`` itself, whatever the file's attention.causal says
    note: str = ""  # why it does not run, or what to know about it


def _decoder(name: str) -> Arch:
    return Arch(name, causal=True, default_pooling="last", rank_token="last")


def _encoder(name: str, pooling: str = "mean", tokenizer: str = "", **kw) -> Arch:
    return Arch(name, causal=False, default_pooling=pooling, rank_token="cls", one_batch=True, tokenizer=tokenizer,
                **kw)


ARCHS = {row.name: row for row in (
    _decoder("qwen3"),
    _decoder("qwen2"),
    _encoder("bert"),  # BERT, RoBERTa, XLM-R (WordPiece or SentencePiece), DistilBERT, CamemBERT
    _encoder("nomic-bert", tokenizer="wordpiece"),  # nomic-embed-text v1, v1.5
    _encoder("nomic-bert-moe"),  # nomic-embed-text-v2-moe (XLM-R's SentencePiece vocabulary)
    _encoder("jina-bert-v2"),  # jina-embeddings-v2 (ALiBi; WordPiece or BPE)
    _encoder("jina-bert-v3"),  # jina-embeddings-v3 (XLM-R with LoRA task adapters)
    _encoder("modern-bert", tokenizer="bpe"),  # gte-modernbert, modernbert-embed, granite-embedding r2
    _encoder("neo-bert", pooling="cls"),  # NeoBERT (the converter writes CLS pooling)
    _encoder("eurobert", tokenizer="bpe"),  # EuroBERT, jina-embeddings-v5
    _encoder("gemma-embedding", tokenizer="spm", causal_fixed=True),  # EmbeddingGemma (Gemma 3, bidirectional, + 2 Dense layers)
    _encoder("llama-embed"),  # llama-embed-nemotron (bidirectional Llama)
    _encoder("t5encoder", tokenizer="spm", runs=False,
             note="llama.cpp runs T5 encoders through llama_encode, which gguf-embed does not use yet"),
)}


def known(name: str) -> bool:
    return name in ARCHS or name.startswith("qwen")


def arch(name: str) -> Arch:
    """The row of a GGUF architecture. An unknown one is run as llama.cpp runs it by default: causal
    attention (its ``hparams.causal_attn`` default) unless the file says otherwise, mean pooling;
    ``unknown_note`` says so."""
    row = ARCHS.get(name)
    if row is not None:
        return row
    if name.startswith("qwen"):
        return _decoder(name)
    return Arch(name, causal=True, default_pooling="mean", rank_token="last")


def unknown_note(name: str, causal: bool, pooling: str) -> str:
    """The one line an unknown architecture gets (inspect and the first encode)."""
    how = "a decoder (causal attention, inputs split over batches)" if causal else \
        "an encoder (bidirectional, as the file's attention.causal says)"
    return (f"architecture {name!r} is not one gguf-embed knows; assumed {how} with {pooling} pooling: "
            f"check its vectors against the original model")


#: EmbeddingGemma's two sentence-transformers Dense layers, as llama.cpp names them (``dense_2``,
#: ``dense_3``; llama.cpp applies them after pooling); its converter writes them only when asked
DENSE_TENSORS = ("dense_2.weight", "dense_3.weight")
DENSE_FLAG = "--sentence-transformers-dense-modules"


def missing_dense_note(path_name: str) -> str:
    return (f"{path_name} lacks EmbeddingGemma's two Dense projection layers (dense_2, dense_3), so its vectors "
            f"are not the model's; convert again with llama.cpp's convert_hf_to_gguf.py {DENSE_FLAG}")


#: Hugging Face ``architectures`` entries the converter reads, and the GGUF architecture each becomes
HF_ARCHITECTURES = {
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3Model": "qwen3",
    "BertModel": "bert",
    "BertForMaskedLM": "bert",
    "XLMRobertaModel": "bert",
    "XLMRobertaForMaskedLM": "bert",
    "Qwen3ForSequenceClassification": "qwen3",
    "BertForSequenceClassification": "bert",
    "XLMRobertaForSequenceClassification": "bert",
    "NomicBertModel": "nomic-bert",  # nomic-embed-text v1, v1.5 (nomic's own config, or transformers')
    "ModernBertModel": "modern-bert",
    "ModernBertForMaskedLM": "modern-bert",
    "Gemma3TextModel": "gemma-embedding",  # EmbeddingGemma (bidirectional; a causal Gemma 3 is refused)
}
#: config.json ``model_type`` -> GGUF architecture, when ``architectures`` says nothing known
HF_MODEL_TYPES = {"qwen3": "qwen3", "bert": "bert", "xlm-roberta": "bert", "nomic_bert": "nomic-bert",
                  "modernbert": "modern-bert"}
#: models.toml ``architecture`` (the family) -> GGUF architecture of its converted file
FAMILY_ARCH = {"qwen3": "qwen3", "bert": "bert", "xlm-roberta": "bert", "nomic-bert": "nomic-bert",
               "modern-bert": "modern-bert", "gemma-embedding": "gemma-embedding"}

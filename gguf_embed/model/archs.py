"""Architecture facts, one row per GGUF architecture, and the Hugging Face classes each comes from.

Everything that differs between a decoder (Qwen3) and an encoder (BERT, XLM-R as
llama.cpp's BERT) is read from here: causal attention, the pooling a file without one
gets, the token a rerank head reads, and how ``models.toml`` families map to GGUF files.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Arch", "ARCHS", "arch", "HF_ARCHITECTURES", "HF_MODEL_TYPES", "FAMILY_ARCH"]


@dataclass(frozen=True)
class Arch:
    name: str  # general.architecture
    causal: bool  # attention over earlier tokens only (decoders)
    default_pooling: str  # what a file that names no pooling (or "none") gets
    rank_token: str  # the token a RANK head reads: "last" (decoders) or "cls" (encoders)


ARCHS = {
    "qwen3": Arch("qwen3", causal=True, default_pooling="last", rank_token="last"),
    "qwen2": Arch("qwen2", causal=True, default_pooling="last", rank_token="last"),
    "bert": Arch("bert", causal=False, default_pooling="mean", rank_token="cls"),
    "nomic-bert": Arch("nomic-bert", causal=False, default_pooling="mean", rank_token="cls"),
    "xlm-roberta": Arch("xlm-roberta", causal=False, default_pooling="mean", rank_token="cls"),
}
_UNKNOWN_DECODER = Arch("?", causal=True, default_pooling="mean", rank_token="last")


def arch(name: str) -> Arch:
    """The row of a GGUF architecture; an unknown one is treated as a decoder (llama.cpp's default)."""
    row = ARCHS.get(name)
    if row is not None:
        return row
    if name.startswith("qwen"):
        return Arch(name, causal=True, default_pooling="last", rank_token="last")
    return Arch(name, _UNKNOWN_DECODER.causal, _UNKNOWN_DECODER.default_pooling, _UNKNOWN_DECODER.rank_token)


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
}
#: config.json ``model_type`` -> GGUF architecture, when ``architectures`` says nothing known
HF_MODEL_TYPES = {"qwen3": "qwen3", "bert": "bert", "xlm-roberta": "bert"}
#: models.toml ``architecture`` (the family) -> GGUF architecture of its converted file
FAMILY_ARCH = {"qwen3": "qwen3", "bert": "bert", "xlm-roberta": "bert"}

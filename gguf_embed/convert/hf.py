"""Read a Hugging Face model folder: config, tokenizer and sentence-transformers files.

Everything that decides how the GGUF embeds is read here, from the files, and checked
before any output exists: an unsupported architecture, a missing tokenizer or an
unknown pre-tokenizer stops the conversion with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConversionError
from ..model.archs import FAMILY_ARCH
from ..model.archs import HF_ARCHITECTURES as ARCHITECTURES
from ..model.archs import HF_MODEL_TYPES as MODEL_TYPES

# models.toml architecture names the converter handles (XLM-R runs as llama.cpp's BERT)
REGISTRY_ARCHS = frozenset(FAMILY_ARCH)
# RoBERTa-style models number positions from padding_idx + 1
_OFFSET_POSITIONS = ("XLMRobertaModel", "XLMRobertaForMaskedLM", "XLMRobertaForSequenceClassification")

# BPE pre-tokenizer split patterns (as written in tokenizer.json) -> llama.cpp's name.
_QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {_QWEN2_RE: "qwen2", _LLAMA3_RE: "llama-bpe"}


@dataclass
class STInfo:
    """What the sentence-transformers files say about embedding with this model."""

    pooling: str | None = None
    normalize: bool = False
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    dense: list[str] = field(default_factory=list)  # the Dense modules' folders, in order


@dataclass
class HFModel:
    folder: Path
    config: dict
    hf_architecture: str
    arch: str
    tokenizer: dict
    st: STInfo

    @property
    def position_offset(self) -> int:
        """Leading rows of the position table the model never uses (llama.cpp counts positions from 0)."""
        if self.hf_architecture in _OFFSET_POSITIONS or self.config.get("model_type") == "xlm-roberta":
            return int(self.config.get("pad_token_id", 1)) + 1
        return 0

    @property
    def max_positions(self) -> int:
        return int(self.config["max_position_embeddings"]) - self.position_offset

    @property
    def name(self) -> str:
        return self.config.get("_name_or_path") or self.folder.name


def with_aliases(config: dict, arch: str) -> dict:
    """The config under transformers' usual names where the repo spells them its own way: nomic-bert's
    GPT-2-style names (nomic-embed-text's own config), ModernBERT's ``norm_eps``."""
    config = dict(config)
    for ours, theirs in _ALIASES.get(arch, ()):
        if ours not in config and config.get(theirs) is not None:
            config[ours] = config[theirs]
    if arch == "nomic-bert" and config.get("max_trained_positions"):
        # v1 and v1.5 have an 8192-position RoPE but were trained for 2048 tokens (llama.cpp's converter agrees)
        config["max_position_embeddings"] = min(int(config["max_trained_positions"]),
                                                int(config.get("n_positions") or config["max_trained_positions"]))
    return config


_ALIASES = {
    "nomic-bert": (("hidden_size", "n_embd"), ("num_hidden_layers", "n_layer"), ("num_attention_heads", "n_head"),
                   ("intermediate_size", "n_inner"), ("layer_norm_eps", "layer_norm_epsilon"),
                   ("max_position_embeddings", "n_positions"), ("rope_theta", "rotary_emb_base")),
    "modern-bert": (("layer_norm_eps", "norm_eps"),),
}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {path.name}: {exc}") from None


def _pooling_from_config(cfg: dict) -> str | None:
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_lasttoken"):
        return "last"
    mode = cfg.get("pooling_mode")
    if mode in ("mean", "cls"):
        return mode
    if mode == "lasttoken":
        return "last"
    if any(cfg.get(k) for k in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")):
        raise ConversionError("unsupported sentence-transformers pooling mode (only mean, cls and last-token)")
    return None


def read_st_info(folder: Path) -> STInfo:
    info = STInfo()
    modules_path = folder / "modules.json"
    if modules_path.is_file():
        for mod in _read_json(modules_path):
            kind = mod.get("type", "")
            if kind.endswith("Pooling"):
                pool_cfg = folder / mod.get("path", "") / "config.json"
                if pool_cfg.is_file():
                    info.pooling = _pooling_from_config(_read_json(pool_cfg))
            elif kind.endswith("Normalize"):
                info.normalize = True
            elif kind.endswith("Dense"):
                info.dense.append(mod.get("path", ""))
    sbert = folder / "sentence_bert_config.json"
    if sbert.is_file():
        info.max_seq_length = _read_json(sbert).get("max_seq_length")
    st_cfg = folder / "config_sentence_transformers.json"
    if st_cfg.is_file():
        cfg = _read_json(st_cfg)
        info.prompts = {k: v for k, v in (cfg.get("prompts") or {}).items() if isinstance(v, str)}
        info.default_prompt_name = cfg.get("default_prompt_name")
    return info


def read_folder(folder: Path) -> HFModel:
    if not folder.is_dir():
        raise ConversionError(f"{folder} is not a folder")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{folder} has no config.json; is it a Hugging Face model folder?")
    config = _read_json(cfg_path)
    archs = config.get("architectures") or []
    hf_arch = archs[0] if archs else config.get("model_type", "?")
    arch = ARCHITECTURES.get(hf_arch) or (MODEL_TYPES.get(config.get("model_type", "")) if not archs else None)
    if arch is None:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise ConversionError(f"unsupported architecture {hf_arch!r} (supported: {supported})")
    tok_path = folder / "tokenizer.json"
    if not tok_path.is_file():
        raise ConversionError(f"{folder} has no tokenizer.json; the GGUF needs the model's tokenizer")
    tokenizer = _read_json(tok_path)
    return HFModel(folder, with_aliases(config, arch), hf_arch, arch, tokenizer, read_st_info(folder))


def bpe_pre_tokenizer(tokenizer: dict) -> str:
    """llama.cpp's name for the BPE pre-tokenizer described in tokenizer.json."""
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    patterns = [s.get("pattern", {}).get("Regex") for s in steps if s.get("type") == "Split"]
    if patterns:
        name = PRE_TOKENIZERS.get(patterns[0])
        if name is None:
            raise ConversionError(f"unknown BPE pre-tokenizer pattern {patterns[0]!r}")
        return name
    if any(s.get("type") == "ByteLevel" and s.get("use_regex", True) for s in steps):
        return "gpt2"
    raise ConversionError(f"unsupported BPE pre-tokenizer {pre.get('type')!r}")

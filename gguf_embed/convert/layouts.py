"""What differs between the architectures the converter writes: tensor names, tensor fixes and
hyperparameters, in llama.cpp's conventions (the names, keys and values its own converter writes, so
that llama.cpp loads and runs the files the same way).

- ``qwen3``, ``bert`` (BERT, RoBERTa, XLM-R): transformers' names, mapped by gguf's own tables.
- ``nomic-bert`` (nomic-embed-text v1, v1.5): nomic's own tensor names (``attn.Wqkv``, ``mlp.fc11``
  up, ``fc12`` gate, ``fc2`` down, ``norm1``/``norm2``, ``emb_ln``), SwiGLU, RoPE, no biases,
  post-norm; the context is the 2048 trained positions, not the 8192 of its RoPE.
- ``modern-bert`` (gte-modernbert, modernbert-embed, granite-embedding r2): fused ``Wqkv`` and a
  GLU ``Wi`` (up and gate, 2 x n_ff rows) kept as they are; no biases; a global layer every
  ``global_attn_every_n_layers``, the others attend within ``local_attention`` tokens, each kind with
  its own RoPE base; the activation named in the file.
- ``gemma-embedding`` (EmbeddingGemma): Gemma 3's tensors, every RMS norm weight + 1 (Gemma's
  norm multiplies by 1 + w, llama.cpp's by w), bidirectional (llama.cpp decides it for the
  architecture, no causal key), sliding-window layers with their own RoPE base, and the two
  sentence-transformers Dense layers as ``dense_2`` / ``dense_3``, which llama.cpp applies after
  pooling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gguf

from .. import keys
from ..errors import ConversionError
from .hf import HFModel
from .weights import TensorRef, iter_tensor_refs

__all__ = ["ARCH", "hf_name", "write_hparams", "dense_refs", "TensorFix", "tensor_fix", "check_config"]

M = gguf.MODEL_ARCH
ARCH = {"qwen3": M.QWEN3, "bert": M.BERT, "nomic-bert": M.NOMIC_BERT, "modern-bert": M.MODERN_BERT,
        "gemma-embedding": M.GEMMA_EMBEDDING}
TOKEN_EMBD = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_EMBD] + ".weight"
_DROP = ("pooler.", "cls.", "lm_head.", "head.", "decoder.", "classifier.")


def hf_name(arch: str, name: str) -> str | None:
    """Normalise an HF tensor name; None for tensors an embedding model does not use."""
    if arch == "qwen3":
        if name.startswith("lm_head.") or name.endswith("rotary_emb.inv_freq"):
            return None
        return name if name.startswith("model.") else "model." + name
    if arch in ("modern-bert", "gemma-embedding") and name.startswith("model."):
        name = name[len("model."):]  # ModernBertForMaskedLM, Gemma3ForCausalLM-style prefixes
    if name.startswith(("bert.", "roberta.")):
        name = name.split(".", 1)[1]
    if name.endswith(".gamma"):
        name = name[:-6] + ".weight"
    elif name.endswith(".beta"):
        name = name[:-5] + ".bias"
    if name in ("embeddings.position_ids", "embeddings.token_type_ids") or name.startswith(_DROP) \
            or name.endswith("rotary_emb.inv_freq"):
        return None
    return name


@dataclass(frozen=True)
class TensorFix:
    shift: float = 0.0  # added to every value (Gemma's norms: 1 + w)
    keep_rows: int | None = None  # rows beyond the vocabulary dropped


def tensor_fix(hf: HFModel, gguf_name: str) -> TensorFix:
    if hf.arch != "gemma-embedding":
        return TensorFix()
    if gguf_name.rpartition(".")[0].endswith("norm"):
        return TensorFix(shift=1.0)
    if gguf_name == TOKEN_EMBD and hf.config.get("vocab_size"):  # rows past the vocabulary (llama.cpp's converter
        return TensorFix(keep_rows=int(hf.config["vocab_size"]))  # drops them too)
    return TensorFix()


def check_config(hf: HFModel) -> None:
    """Refuse what llama.cpp's graph for the architecture does not compute."""
    c = hf.config
    if hf.arch == "nomic-bert":
        if c.get("moe_every_n_layers"):
            raise ConversionError("nomic-embed-text-v2-moe (nomic-bert-moe) is not supported by the converter yet")
        want = {"activation_function": "swiglu", "causal": False, "qkv_proj_bias": False, "mlp_fc1_bias": False,
                "mlp_fc2_bias": False, "prenorm": False, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False,
                "rotary_emb_scale_base": None}
        bad = [f"{k}={c[k]!r}" for k, v in want.items() if k in c and c[k] != v]
        if bad:
            raise ConversionError(f"unsupported nomic-bert variant ({', '.join(bad)}); llama.cpp runs {want}")
    if hf.arch == "modern-bert" and (c.get("attention_bias") or c.get("mlp_bias") or c.get("norm_bias")):
        raise ConversionError("ModernBERT with bias tensors is not supported (llama.cpp's graph has none)")
    if hf.arch == "gemma-embedding" and not c.get("use_bidirectional_attention", True):
        raise ConversionError("a causal Gemma 3 is a decoder, not EmbeddingGemma; only bidirectional ones convert")


def _theta(params: dict | None) -> float | None:
    if not params:
        return None
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ("default", None):
        raise ConversionError(f"RoPE scaling {rope_type!r} is not supported yet")
    theta = params.get("rope_theta")
    return float(theta) if theta is not None else None


def rope_thetas(c: dict) -> tuple[float | None, float | None]:
    """(global, sliding-window) RoPE bases: transformers 5's ``rope_parameters`` (flat, or per layer kind)
    or the older top-level names."""
    params = c.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        full, local = _theta(params.get("full_attention")), _theta(params.get("sliding_attention"))
    else:
        full, local = _theta(params) if params else None, None
        _theta(c.get("rope_scaling"))
    full = full or next((float(c[k]) for k in ("global_rope_theta", "rope_theta") if c.get(k)), None)
    local = local or next((float(c[k]) for k in ("local_rope_theta", "rope_local_base_freq") if c.get(k)), None)
    return full, local


def write_hparams(w: gguf.GGUFWriter, hf: HFModel, pooling: str) -> None:
    c = hf.config
    w.add_context_length(hf.max_positions)
    w.add_embedding_length(int(c["hidden_size"]))
    w.add_feed_forward_length(int(c["intermediate_size"]))
    w.add_block_count(int(c["num_hidden_layers"]))
    w.add_head_count(int(c["num_attention_heads"]))
    full, local = rope_thetas(c) if hf.arch != "bert" else (None, None)
    if full is not None and hf.arch != "bert":
        w.add_rope_freq_base(full)
    if hf.arch in ("qwen3", "gemma-embedding"):
        w.add_head_count_kv(int(c.get("num_key_value_heads", c["num_attention_heads"])))
        head_dim = int(c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"])
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", 1e-6)))
    else:
        w.add_layer_norm_eps(float(c.get("layer_norm_eps", 1e-12)))
    if hf.arch == "modern-bert":
        w.add_layer_norm_rms_eps(float(c.get("layer_norm_eps", 1e-5)))  # llama.cpp's converter writes both
        _modern_bert(w, c)
    if hf.arch in ("modern-bert", "gemma-embedding") and local is not None:
        w.add_rope_freq_base_swa(local)
    if hf.arch == "gemma-embedding":
        w.add_sliding_window(int(c["sliding_window"]))
        _dense_dims(w, hf)
    else:  # gemma-embedding is bidirectional by architecture: llama.cpp's converter writes no key
        w.add_causal_attention(hf.arch == "qwen3")
    w.add_pooling_type(gguf.PoolingType(keys.POOLING_IDS[pooling]))


def _modern_bert(w: gguf.GGUFWriter, c: dict) -> None:
    w.add_sliding_window(int(c["local_attention"]))
    if c.get("global_attn_every_n_layers") is not None:
        w.add_sliding_window_pattern(int(c["global_attn_every_n_layers"]))
    w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    w.add_vocab_size(int(c["vocab_size"]))
    if c.get("hidden_activation"):  # gelu (GeGLU) for ModernBERT, silu (SwiGLU) for granite-embedding r2
        w.add_string(keys.arch_key(w.arch, "hidden_activation"), str(c["hidden_activation"]))
    pooling = c.get("classifier_pooling")
    if pooling in ("cls", "mean"):  # the pooling before a classification head
        w.add_uint32(keys.arch_key(w.arch, "classifier.pooling_type"), keys.POOLING_IDS[pooling])


def _dense_dims(w: gguf.GGUFWriter, hf: HFModel) -> None:
    for name, ref in dense_refs(hf):
        n_out, n_in = ref.shape
        w.add_dense_features_dims(name.split(".")[0], n_in, n_out)


def dense_refs(hf: HFModel, allow_pickle: bool = False) -> list[tuple[str, TensorRef]]:
    """EmbeddingGemma's sentence-transformers Dense layers as (llama.cpp name, weight): the first
    ``dense_2``, the second ``dense_3``; each must be a bias-free linear map (identity activation)."""
    if not hf.st.dense:
        return []
    if hf.arch != "gemma-embedding":
        raise ConversionError("models with a sentence-transformers Dense layer are supported for EmbeddingGemma only")
    if len(hf.st.dense) != 2:
        raise ConversionError(f"EmbeddingGemma has two Dense layers; this model has {len(hf.st.dense)}")
    out = []
    for name, path in zip(("dense_2.weight", "dense_3.weight"), hf.st.dense):
        _check_dense(hf.folder / path)
        weights = [r for r in iter_tensor_refs(hf.folder / path, allow_pickle=allow_pickle) if r.name.endswith("weight")]
        if len(weights) != 1 or len(weights[0].shape) != 2:
            raise ConversionError(f"{path}: expected one linear weight, found {[r.name for r in weights]}")
        out.append((name, weights[0]))
    return out


def _check_dense(folder: Path) -> None:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {folder.name}/config.json: {exc}") from None
    activation = str(cfg.get("activation_function") or "torch.nn.modules.linear.Identity")
    if cfg.get("bias") or not activation.endswith("Identity"):
        raise ConversionError(f"{folder.name}: llama.cpp applies a Dense layer as a bias-free linear map; this one has "
                              f"bias={cfg.get('bias')} and activation {activation}")

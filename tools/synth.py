"""Write a random-weight Hugging Face folder with the exact shapes of a models.toml entry.

    python tools/synth.py qwen3-embedding-4b OUT_DIR [--dtype bf16|f16|f32] [--layers N] [--seed S]

The folder looks like the real repository: config.json, the same tensor names and shapes
(Qwen3-Embedding: ``embed_tokens.weight``, ``layers.N.self_attn.q_proj.weight``, ...; BERT:
``embeddings.word_embeddings.weight``, ``encoder.layer.N....``), a tokenizer.json with the
real vocabulary size (a small trained tokenizer padded with placeholder tokens) and the
sentence-transformers files, so conversion, memory and speed can be measured without
downloading weights. Random weights say nothing about quality.

No torch: safetensors files are written with numpy (8-byte little-endian header length,
JSON header, raw data), one tensor at a time and large tensors in slices of rows, so
memory stays near 100 MiB whatever the model's size. Models over 2 GiB are sharded as
model-0000K-of-0000N.safetensors with model.safetensors.index.json, as on the Hub.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gguf_embed.registry import ModelEntry, load_registry  # noqa: E402

SHARD_BYTES = 2 * 2**30


def qwen3_tensors(s, layers):
    kv = s.kv_heads or s.heads
    hd = s.head_dim or s.hidden // s.heads
    yield "embed_tokens.weight", (s.vocab, s.hidden)
    for i in range(layers):
        p = f"layers.{i}."
        yield p + "input_layernorm.weight", (s.hidden,)
        yield p + "self_attn.q_proj.weight", (s.heads * hd, s.hidden)
        yield p + "self_attn.k_proj.weight", (kv * hd, s.hidden)
        yield p + "self_attn.v_proj.weight", (kv * hd, s.hidden)
        yield p + "self_attn.o_proj.weight", (s.hidden, s.heads * hd)
        yield p + "self_attn.q_norm.weight", (hd,)
        yield p + "self_attn.k_norm.weight", (hd,)
        yield p + "post_attention_layernorm.weight", (s.hidden,)
        yield p + "mlp.gate_proj.weight", (s.ffn, s.hidden)
        yield p + "mlp.up_proj.weight", (s.ffn, s.hidden)
        yield p + "mlp.down_proj.weight", (s.hidden, s.ffn)
    yield "norm.weight", (s.hidden,)


def bert_tensors(s, layers):
    h = s.hidden
    yield "embeddings.word_embeddings.weight", (s.vocab, h)
    yield "embeddings.position_embeddings.weight", (s.max_positions, h)
    yield "embeddings.token_type_embeddings.weight", (2, h)
    yield "embeddings.LayerNorm.weight", (h,)
    yield "embeddings.LayerNorm.bias", (h,)
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            yield p + f"attention.self.{part}.weight", (h, h)
            yield p + f"attention.self.{part}.bias", (h,)
        yield p + "attention.output.dense.weight", (h, h)
        yield p + "attention.output.dense.bias", (h,)
        yield p + "attention.output.LayerNorm.weight", (h,)
        yield p + "attention.output.LayerNorm.bias", (h,)
        yield p + "intermediate.dense.weight", (s.ffn, h)
        yield p + "intermediate.dense.bias", (s.ffn,)
        yield p + "output.dense.weight", (h, s.ffn)
        yield p + "output.dense.bias", (h,)
        yield p + "output.LayerNorm.weight", (h,)
        yield p + "output.LayerNorm.bias", (h,)


TORCH_DTYPES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}
DTYPES = {"bf16": ("BF16", 2), "f16": ("F16", 2), "f32": ("F32", 4)}
CHUNK_ELEMENTS = 8 * 2**20  # values generated at once


def _encode(f: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "f32":
        return f
    if dtype == "f16":
        return f.astype(np.float16)
    return (f.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16: the high half of each float32


def write_tensor(fh, rng, shape, name: str, dtype: str) -> None:
    """Norm weights 1, biases 0, matrices N(0, 0.02), written in slices of rows."""
    if len(shape) == 1:
        _encode(np.full(shape, 0.0 if name.endswith("bias") else 1.0, dtype=np.float32), dtype).tofile(fh)
        return
    rows, cols = shape[0], int(np.prod(shape[1:]))
    step = max(1, CHUNK_ELEMENTS // cols)
    for a in range(0, rows, step):
        n = min(step, rows - a)
        block = rng.standard_normal((n, cols), dtype=np.float32)
        block *= np.float32(0.02)
        _encode(block, dtype).tofile(fh)


def write_shards(out: Path, tensors, rng, dtype: str = "bf16") -> list[str]:
    """safetensors file(s), one tensor in memory at a time; an index when there is more than one."""
    st_dtype, width = DTYPES[dtype]
    shards, cur, size = [], [], 0
    for name, shape in tensors:
        nbytes = int(np.prod(shape)) * width
        if cur and size + nbytes > SHARD_BYTES:
            shards.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += nbytes
    shards.append(cur)
    weight_map, names = {}, []
    for k, shard in enumerate(shards, 1):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        names.append(fname)
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in shard:
            n = int(np.prod(shape)) * width
            header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[name] = fname
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(out / fname, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            for name, shape in shard:
                write_tensor(fh, rng, shape, name, dtype)
    if len(shards) > 1:
        total = sum(int(np.prod(shape)) * width for shard in shards for _, shape in shard)
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return names


def write_tokenizer(out: Path, entry: ModelEntry) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    vocab_size = entry.shape.vocab
    corpus = [
        "Retrieval augmented generation finds passages that answer a question.",
        "The quick brown fox jumps over the lazy dog. 向量检索 def f(x): return x",
    ] * 50
    if entry.architecture == "qwen3":
        split = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(corpus, trainers.BpeTrainer(
            vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        data = json.loads(tok.to_str())
        vocab = data["model"]["vocab"]
        # pad to the real size with tokens no merge produces, so ids and embedding rows match the real model
        i = 0
        while len(vocab) < vocab_size - len(specials):
            vocab[f"\u0120synthetic{i}"] = len(vocab)
            i += 1
        data["added_tokens"] = [
            {"id": len(vocab) + k, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for k, t in enumerate(specials)
        ]
        eot = len(vocab)
        data["post_processor"] = json.loads(processors.TemplateProcessing(
            single="$A:0 <|endoftext|>:0", pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
            special_tokens=[("<|endoftext|>", eot)]).__getstate__())
        (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
        added = {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in data["added_tokens"]}
        (out / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": added, "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>", "bos_token": None, "unk_token": None, "padding_side": "left",
            "model_max_length": entry.max_tokens}, indent=2))
    else:
        words = sorted({w.lower().strip(".:") for line in corpus for w in line.split()})
        vocab = {t: i for i, t in enumerate(["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
        for c in "abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'()-":
            vocab.setdefault(c, len(vocab))
            vocab.setdefault("##" + c, len(vocab))
        for w in words:
            vocab.setdefault(w, len(vocab))
        i = 0
        while len(vocab) < vocab_size:
            vocab[f"synthetic{i}"] = len(vocab)
            i += 1
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        tok.save(str(out / "tokenizer.json"))
        (out / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "BertTokenizer", "do_lower_case": True, "cls_token": "[CLS]", "sep_token": "[SEP]",
            "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]"}))


def write_config(out: Path, entry: ModelEntry, layers: int, dtype: str = "bf16") -> None:
    s = entry.shape
    if entry.architecture == "qwen3":
        cfg = {
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": s.vocab,
            "hidden_size": s.hidden, "intermediate_size": s.ffn, "num_hidden_layers": layers,
            "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads or s.heads,
            "head_dim": s.head_dim or s.hidden // s.heads, "max_position_embeddings": s.max_positions,
            "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": s.tie_embeddings,
            "torch_dtype": TORCH_DTYPES[dtype],
        }
    else:
        cfg = {
            "architectures": ["BertModel"], "model_type": "bert", "vocab_size": s.vocab, "hidden_size": s.hidden,
            "intermediate_size": s.ffn, "num_hidden_layers": layers, "num_attention_heads": s.heads,
            "max_position_embeddings": s.max_positions, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
            "hidden_act": "gelu", "torch_dtype": TORCH_DTYPES[dtype],
        }
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (out / "modules.json").write_text(json.dumps(modules))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "2_Normalize").mkdir(exist_ok=True)
    key = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "last": "pooling_mode_lasttoken"}
    (out / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": s.hidden, key[entry.pooling]: True}))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": entry.max_tokens}))
    (out / "config_sentence_transformers.json").write_text(json.dumps({"prompts": dict(entry.prompts)}))


def synthesize(name: str, out: Path, *, layers: int | None = None, seed: int = 0, dtype: str = "bf16") -> Path:
    entry = load_registry().get(name)
    if entry.shape is None or entry.architecture not in ("qwen3", "bert"):
        raise SystemExit(f"{name}: no shape table or unsupported architecture")
    layers = layers or entry.shape.layers
    out.mkdir(parents=True, exist_ok=True)
    if dtype not in DTYPES:
        raise SystemExit(f"--dtype must be one of {', '.join(DTYPES)}")
    write_config(out, entry, layers, dtype)
    write_tokenizer(out, entry)
    gen = qwen3_tensors if entry.architecture == "qwen3" else bert_tensors
    write_shards(out, gen(entry.shape, layers), np.random.default_rng(seed), dtype)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a models.toml name with a [shape] table")
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, help="fewer layers than the real model (for quick checks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="weight type of the safetensors (default bf16)")
    args = ap.parse_args()
    print(synthesize(args.model, args.out, layers=args.layers, seed=args.seed, dtype=args.dtype))


if __name__ == "__main__":
    main()

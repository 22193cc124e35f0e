"""Write a GGUF from a Hugging Face folder, one tensor at a time; quantise with llama.cpp."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from .. import keys
from ..engine.quantize import quantize_file
from ..errors import ConversionError
from ..model.tensor_table import head_types, mix_overrides
from ..text.normalize import UnsupportedNormalizer, normalizer_for_tokenizer_json
from .hf import HFModel, bpe_pre_tokenizer
from .layouts import ARCH, TensorFix, check_config, dense_refs, hf_name, tensor_fix, write_hparams
from .m3_heads import write_heads
from .spm import write_spm
from .rerank import (
    DEFAULT_MAX_TOKENS,
    detect_task,
    rerank_refs,
    type1_token_count,
    write_rerank_meta,
)
from .unigram import write_unigram
from .weights import TensorRef, iter_tensor_refs, to_bf16_bits, to_float32

log = logging.getLogger("gguf_embed.convert")

DIRECT_TYPES = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16, "BF16": gguf.LlamaFileType.MOSTLY_BF16}


@dataclass(frozen=True)
class Overrides:
    """Facts the HF files do not carry, from the registry or the command line."""

    pooling: str | None = None
    max_tokens: int | None = None
    matryoshka_min: int | None = None
    prompts: tuple[tuple[str, str], ...] = ()
    registry_name: str | None = None
    task: str | None = None  # "embed" | "rerank"; None: decided from the folder
    quant_choice: str | None = None  # why --quant auto chose the type written


# --- tensors ------------------------------------------------------------------------


# llama.cpp reads these only as F32: 1-D tensors, norms, and embeddings that are added
# to activations directly (a view of a row, not a lookup).
_F32_ONLY = {gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.POS_EMBD], gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES]}


_POS_EMBD = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.POS_EMBD] + ".weight"


def _keep_f32(gguf_name: str, shape: tuple[int, ...]) -> bool:
    base, _, suffix = gguf_name.rpartition(".")
    return len(shape) <= 1 or suffix != "weight" or base.endswith("_norm") or base in _F32_ONLY


@dataclass
class _Planned:
    ref: TensorRef
    gguf_name: str
    out_type: str  # F32 | F16 | BF16
    skip_rows: int = 0  # leading rows dropped (RoBERTa's position table)
    fix: TensorFix = TensorFix()  # per-architecture value fixes (see convert.layouts)

    @property
    def shape(self) -> tuple[int, ...]:
        rows = self.ref.shape[0] - self.skip_rows
        if self.fix.keep_rows is not None:
            rows = min(rows, self.fix.keep_rows)
        return (rows, *self.ref.shape[1:])


def plan_tensors(hf: HFModel, refs: list[TensorRef], ftype: str, *, separate_head: bool = False) -> list[_Planned]:
    """GGUF names and types for the HF tensors. ``separate_head``: also write the token
    embeddings as an explicit ``output.weight``, for the quantizer to store at its own type."""
    n_blocks = int(hf.config["num_hidden_layers"])
    name_map = gguf.get_tensor_name_map(ARCH[hf.arch], n_blocks)
    planned = []
    for ref in refs:
        name = hf_name(hf.arch, ref.name)
        if name is None:
            continue
        new = name_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ConversionError(f"cannot map tensor {ref.name!r} of {hf.hf_architecture} to a llama.cpp name")
        if ref.dtype not in ("F32", "F16", "BF16", "F64"):
            raise ConversionError(f"tensor {ref.name!r} has non-float dtype {ref.dtype}")
        out_type = "F32" if _keep_f32(new, ref.shape) else ftype
        skip = hf.position_offset if new == _POS_EMBD else 0
        planned.append(_Planned(ref, new, out_type, skip, tensor_fix(hf, new)))
    if not planned:
        raise ConversionError("no model tensors found")
    embd = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_EMBD] + ".weight"
    head = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.OUTPUT] + ".weight"
    if separate_head and not any(p.gguf_name == head for p in planned):
        tok = next((p for p in planned if p.gguf_name == embd), None)
        if tok is not None:
            planned.append(_Planned(tok.ref, head, tok.out_type, fix=tok.fix))
    return planned + [_Planned(ref, name, "F32" if ftype == "F32" else "F16") for name, ref in dense_refs(hf)]


def _convert_array(p: _Planned) -> np.ndarray:
    arr, dtype = p.ref.load(), p.ref.dtype
    if p.skip_rows:
        arr = arr[p.skip_rows:]
    if p.fix.keep_rows is not None:
        arr = arr[:p.fix.keep_rows]
    if p.fix.shift:
        arr, dtype = to_float32(arr, dtype) + np.float32(p.fix.shift), "F32"
    if p.out_type == "BF16":
        out = to_bf16_bits(arr, dtype)
    elif p.out_type == "F16":
        out = to_float32(arr, dtype).astype(np.float16) if dtype != "F16" else arr
    else:
        out = to_float32(arr, dtype)
    return np.ascontiguousarray(out)


_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


# --- metadata -----------------------------------------------------------------------


def _write_unigram_tokenizer(w: gguf.GGUFWriter, hf: HFModel) -> None:
    if hf.arch != "bert":
        raise ConversionError("a Unigram (SentencePiece) tokenizer is only supported for BERT-type models")
    n_vocab = write_unigram(w, hf.tokenizer, hf.config)
    special = gguf.SpecialVocab(hf.folder, load_merges=False, n_vocab=n_vocab)
    special.chat_template = None
    special.add_to_gguf(w, quiet=True)
    for typ in ("bos", "eos"):  # llama.cpp's UGM defaults (no BOS, EOS) differ from XLM-R's <s> ... </s>
        if typ not in special.add_special_token:
            getattr(w, f"add_add_{typ}_token")(False)


def _token_table(tok: dict, n_config: int) -> tuple[list[str], list, int]:
    """(token texts, token types, vocabulary size) from tokenizer.json's vocabulary and added tokens."""
    vocab: dict[str, int] = dict(tok.get("model", {}).get("vocab") or {})
    added = {t["id"]: t for t in tok.get("added_tokens", [])}
    for tid, t in added.items():
        vocab.setdefault(t["content"], tid)
    n_vocab = max(n_config, max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    for text, tid in vocab.items():
        tokens[tid] = text
        if tid in added:
            types[tid] = gguf.TokenType.CONTROL if added[tid].get("special") else gguf.TokenType.USER_DEFINED
        else:
            types[tid] = gguf.TokenType.NORMAL
    return tokens, types, n_vocab


def _wordpiece_tokens(w: gguf.GGUFWriter, hf: HFModel, tokens: list[str], types: list) -> list[str]:
    if hf.arch not in ("bert", "nomic-bert"):
        raise ConversionError(f"a WordPiece tokenizer is not supported for {hf.arch} models")
    prefix = hf.tokenizer.get("model", {}).get("continuing_subword_prefix", "##")
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_type_count(int(hf.config.get("type_vocab_size", 2)))
    if (hf.tokenizer.get("normalizer") or {}).get("lowercase"):  # an uncased vocabulary, as llama.cpp's converter says it
        w.add_bool(keys.LLAMA_LOWERCASE, True)
    # llama.cpp's WPM vocabulary marks word starts with U+2581 instead of marking continuations.
    return [t if ty in (gguf.TokenType.CONTROL, gguf.TokenType.UNUSED)
            else (t[len(prefix):] if t.startswith(prefix) else "\u2581" + t) for t, ty in zip(tokens, types)]


def _write_tokenizer(w: gguf.GGUFWriter, hf: HFModel, type1_tokens: int = 0) -> None:
    tok = hf.tokenizer
    kind = tok.get("model", {}).get("type")
    if hf.arch == "gemma-embedding":  # Gemma's SentencePiece model, as llama.cpp's SPM tokenizer reads it
        n_vocab = write_spm(w, hf.folder, tok, int(hf.config.get("vocab_size", 0)))
        special = gguf.SpecialVocab(hf.folder, load_merges=False, n_vocab=n_vocab)
        special.chat_template = None
        return special.add_to_gguf(w, quiet=True)
    if kind == "Unigram":
        return _write_unigram_tokenizer(w, hf)
    if kind not in ("WordPiece", "BPE"):
        raise ConversionError(f"unsupported tokenizer model {kind!r} (WordPiece, BPE and Unigram are supported)")
    tokens, types, n_vocab = _token_table(tok, int(hf.config.get("vocab_size", 0)))
    if kind == "WordPiece":
        tokens = _wordpiece_tokens(w, hf, tokens, types)
    else:
        pre = bpe_pre_tokenizer(tok)
        w.add_tokenizer_model("gpt2")
        # ModernBERT's GPT-2 byte-level split under the name llama.cpp's converter gives it
        w.add_tokenizer_pre("modern-bert" if hf.arch == "modern-bert" and pre == "gpt2" else pre)
    if type1_tokens:
        # segment-1 copies of every token (see convert.rerank); never produced by the tokenizer
        if n_vocab != type1_tokens:
            raise ConversionError(f"tokenizer has {n_vocab} tokens but the embedding table {type1_tokens}")
        tokens += [f"[TYPE1:{i}]" for i in range(n_vocab)]
        types += [gguf.TokenType.UNUSED] * n_vocab
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(hf.folder, load_merges=kind == "BPE", n_vocab=n_vocab)
    special.chat_template = None  # an embedding GGUF has no chat
    special.add_to_gguf(w, quiet=True)
    if kind == "BPE":
        if not special.merges:
            raise ConversionError("tokenizer.json has no BPE merges")
        # llama.cpp guesses these per pre-tokenizer when absent: write what tokenizer.json says.
        if "bos" not in special.add_special_token:
            w.add_add_bos_token(False)
        if "eos" not in special.add_special_token:
            w.add_add_eos_token(False)


def _write_embedding_meta(w: gguf.GGUFWriter, hf: HFModel, ov: Overrides, pooling: str, task: str) -> None:
    prompts = dict(hf.st.prompts)
    for name, text in ov.prompts:
        prompts.setdefault(name, text)
    for name, text in sorted(prompts.items()):
        # add_string() drops empty strings; an empty document prompt is still a fact worth keeping
        w.add_key_value(keys.PROMPT + name, text, gguf.GGUFValueType.STRING)
    if hf.st.default_prompt_name:
        w.add_string(keys.DEFAULT_PROMPT, hf.st.default_prompt_name)
    max_tokens = ov.max_tokens or hf.st.max_seq_length or (DEFAULT_MAX_TOKENS.get(hf.arch) if task == "rerank" else None)
    max_tokens = max_tokens or hf.max_positions
    w.add_uint32(keys.MAX_TOKENS, min(int(max_tokens), hf.max_positions))
    if ov.matryoshka_min:
        w.add_uint32(keys.MATRYOSHKA_MIN, int(ov.matryoshka_min))
    w.add_bool(keys.NORMALIZE, hf.st.normalize)
    try:
        w.add_string(keys.TEXT_NORMALIZER, normalizer_for_tokenizer_json(hf.tokenizer))
    except UnsupportedNormalizer as exc:
        raise ConversionError(str(exc)) from None
    w.add_string(keys.SOURCE, hf.name)
    if ov.registry_name:
        w.add_string(keys.REGISTRY_NAME, ov.registry_name)
    if ov.quant_choice:
        w.add_string(keys.QUANT_CHOICE, ov.quant_choice)
    if task == "rerank":
        write_rerank_meta(w, hf)
    else:
        w.add_string(keys.TASK, "embed")


# --- the whole file -----------------------------------------------------------------


def write_gguf(hf: HFModel, out: Path, ftype: str, ov: Overrides, *, allow_pickle: bool, progress=None,
               separate_head: bool = False) -> None:
    """Write ``out`` (not atomically: the caller owns temp names) with tensors as ``ftype``."""
    check_config(hf)
    refs = list(iter_tensor_refs(hf.folder, allow_pickle=allow_pickle))
    task = detect_task(hf, ov.task)
    heads: list[TensorRef] = []
    if task == "rerank":
        refs, heads = rerank_refs(hf, refs)
        pooling = "rank"
    else:
        pooling = ov.pooling or hf.st.pooling or ("last" if hf.arch == "qwen3" else None)
    if pooling is None:
        raise ConversionError("the model has no sentence-transformers pooling config; pass `pooling` mean|cls|last")
    # rerank heads stay F32: they are tiny and the scores are differences of their rows
    planned = plan_tensors(hf, refs, ftype, separate_head=separate_head) + [_Planned(h, h.name, "F32") for h in heads]
    w = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[ARCH[hf.arch]])
    w.add_name(hf.name)
    w.add_file_type(DIRECT_TYPES[ftype])
    write_hparams(w, hf, pooling)
    _write_tokenizer(w, hf, type1_token_count(hf) if task == "rerank" else 0)
    _write_embedding_meta(w, hf, ov, pooling, task)
    if task == "embed":
        write_heads(w, hf, allow_pickle)  # bge-m3's sparse and ColBERT heads, when the folder has them
    for p in planned:
        nbytes = int(np.prod(p.shape, dtype=np.int64)) * np.dtype(_NP[p.out_type]).itemsize
        raw = gguf.GGMLQuantizationType.BF16 if p.out_type == "BF16" else None
        w.add_tensor_info(p.gguf_name, p.shape, np.dtype(_NP[p.out_type]), nbytes, raw_dtype=raw)
    w.write_header_to_file(path=out)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    task = progress.add_task("tensors", total=len(planned)) if progress is not None else None
    try:
        for p in planned:
            arr = _convert_array(p)
            w.write_tensor_data(arr)
            log.debug("%-48s -> %-28s %s %s", p.ref.name, p.gguf_name, p.out_type, tuple(p.ref.shape))
            del arr
            if progress is not None:
                progress.advance(task)
    finally:
        w.close()


def source_float_type(hf: HFModel, allow_pickle: bool) -> str:
    """The lossless intermediate type for quantisation: the source's own float type."""
    dtypes = {r.dtype for r in iter_tensor_refs(hf.folder, allow_pickle=allow_pickle) if len(r.shape) > 1}
    if dtypes == {"BF16"}:
        return "BF16"
    if dtypes == {"F16"}:
        return "F16"
    return "F32"


def separate_head_for(hf: HFModel) -> bool:
    """Decoder embedding models get an explicit, smallest-type output head when quantised.

    Their head is never computed (gguf-embed stops at the final norm; llama.cpp's embeddings
    come from the same norm), but llama.cpp loads it, and with the file's tied embeddings it
    would hold a second copy of them at Q6_K on the GPU (304 MiB for Qwen3-Embedding-4B).
    A separate Q2_K head costs 40% of that; the token embeddings keep the type the tied
    file gave them. The file still loads and embeds the same in stock llama.cpp."""
    return hf.arch == "qwen3"


def quantize(src: Path, dst: Path, quant: str, threads: int | None = None, *, head_for_width: int | None = None,
             importance: tuple[dict, dict] | None = None, mix: str = "embedding") -> None:
    """llama.cpp's quantizer; ``head_for_width``: the model's hidden size, when the file has a
    separate head to store at the smallest type (see ``separate_head_for``); ``importance``:
    (mean squared input per weight, metadata keys recording it) to quantise with; ``mix``: the
    tensor mixture (``choices.QUANT_MIXES``, see ``model.tensor_table``), recorded in the file."""

    types: dict = {"tensor_types": {k: int(v) for k, v in mix_overrides(quant, mix).items()}}
    if head_for_width:
        head, embd = head_types(quant, head_for_width, mix)
        types.update(output_type=int(head), token_embd_type=int(embd))
    metadata = {keys.QUANT_MIX: mix}
    if importance is not None:
        types["imatrix"] = importance[0]
        metadata.update(importance[1])
    quantize_file(src, dst, quant, threads or os.cpu_count() or 1, metadata=metadata, **types)


__all__ = ["Overrides", "write_gguf", "quantize", "source_float_type", "DIRECT_TYPES"]

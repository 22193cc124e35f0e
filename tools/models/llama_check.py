"""llama.cpp's own view of a GGUF file, through llama-cpp-python's low-level API only.

- ``vocab_info``: what llama.cpp's vocabulary says (bos/eos/eot/sep ids and texts, the
  add_bos/add_eos/add_sep flags, the rerank template, classifier labels, pooling type).
- ``llama_embed``: one text embedded with llama.cpp's pooling (the file's pooling type).
- ``rerank_prompt_tokens``: a (query, document) pair formatted as llama-server formats it
  (tools/server/server-common.cpp ``format_prompt_rerank``): with a ``rerank`` chat template,
  ``{query}`` and ``{document}`` replaced (``string_replace_all``) and the whole prompt
  tokenized with add_special=false, parse_special=true; without one,
  ``[BOS if add_bos] query [EOS if add_eos] [SEP if add_sep] doc [EOS if add_eos]`` (query
  and doc tokenized with add_special=false, parse_special=false; SEP stands in for a missing EOS).
- ``llama_rank``: llama.cpp's RANK pooling output for those tokens (all n_cls_out values;
  llama-server reports ``embd[0]``).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np


_QUIET = None


def quiet(on: bool = True) -> None:
    """Route llama.cpp's log lines to nowhere (on) or back to stderr (off)."""
    global _QUIET
    import llama_cpp as ll

    if on and _QUIET is None:
        _QUIET = ll.llama_log_callback(lambda level, text, user_data: None)
    ll.llama_log_set(_QUIET if on else ctypes.cast(None, ll.llama_log_callback), ctypes.c_void_p(0))


class LlamaModel:
    def __init__(self, path: Path, *, verbose: bool = False):
        import llama_cpp as ll

        self.ll = ll
        if not verbose:
            quiet()
        ll.llama_backend_init()
        mp = ll.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.ptr = ll.llama_model_load_from_file(str(path).encode(), mp)
        if not self.ptr:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = ll.llama_model_get_vocab(self.ptr)

    def text(self, token: int) -> str | None:
        if token < 0:
            return None
        buf = ctypes.create_string_buffer(256)
        n = self.ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        arr = (self.ll.llama_token * cap)()
        n = self.ll.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            arr = (self.ll.llama_token * cap)()
            n = self.ll.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, parse_special)
        return list(arr[:n])

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.ll.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else None

    def close(self) -> None:
        if self.ptr:
            self.ll.llama_model_free(self.ptr)
            self.ptr = None


def _context(model: LlamaModel, n_ctx: int, pooling: int | None = None):
    ll = model.ll
    cp = ll.llama_context_default_params()
    cp.n_ctx = n_ctx
    cp.n_batch = n_ctx
    cp.n_ubatch = n_ctx
    cp.n_seq_max = 1
    cp.embeddings = True
    cp.n_threads = cp.n_threads_batch = 4
    if pooling is not None:
        cp.pooling_type = pooling
    ctx = ll.llama_init_from_model(model.ptr, cp)
    if not ctx:
        raise RuntimeError("llama.cpp could not create a context")
    return ctx


def vocab_info(model: LlamaModel) -> dict:
    ll = model.ll
    v = model.vocab
    info = {}
    for kind, fn in (("bos", ll.llama_vocab_bos), ("eos", ll.llama_vocab_eos), ("eot", ll.llama_vocab_eot),
                     ("sep", ll.llama_vocab_sep), ("cls(=bos)", ll.llama_vocab_cls), ("pad", ll.llama_vocab_pad)):
        tid = fn(v)
        info[kind] = (tid, model.text(tid))
    info["add_bos"] = bool(ll.llama_vocab_get_add_bos(v))
    info["add_eos"] = bool(ll.llama_vocab_get_add_eos(v))
    info["add_sep"] = bool(ll.llama_vocab_get_add_sep(v))
    info["n_vocab"] = ll.llama_vocab_n_tokens(v)
    info["n_embd"] = ll.llama_model_n_embd(model.ptr)
    tmpl = ll.llama_model_chat_template(model.ptr, b"rerank")
    info["chat_template.rerank"] = tmpl.decode("utf-8") if tmpl else None
    ctx = _context(model, 64)
    info["context pooling_type"] = ll.llama_pooling_type(ctx)
    ll.llama_free(ctx)
    if info["context pooling_type"] == ll.LLAMA_POOLING_TYPE_RANK:
        n = ll.llama_model_n_cls_out(model.ptr)
        info["n_cls_out"] = n
        info["cls labels"] = [(ll.llama_model_cls_label(model.ptr, i) or b"").decode() for i in range(n)]
    return info


def _run(model: LlamaModel, tokens: list[int], pooling: int | None = None) -> np.ndarray:
    ll = model.ll
    n_ctx = max(64, len(tokens) + 8)
    ctx = _context(model, n_ctx, pooling)
    try:
        batch = ll.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, t in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = int(t), i, 1
                batch.seq_id[i][0], batch.logits[i] = 0, 1
            batch.n_tokens = len(tokens)
            rc = ll.llama_decode(ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
            kind = ll.llama_pooling_type(ctx)
            n_out = ll.llama_model_n_cls_out(model.ptr) if kind == ll.LLAMA_POOLING_TYPE_RANK else ll.llama_model_n_embd(model.ptr)
            ptr = ll.llama_get_embeddings_seq(ctx, 0)
            if not ptr:
                raise RuntimeError("no pooled output")
            return np.ctypeslib.as_array(ptr, shape=(n_out,)).copy()
        finally:
            ll.llama_batch_free(batch)
    finally:
        ll.llama_free(ctx)


def embed_tokens(model: LlamaModel, text: str) -> list[int]:
    """Tokens as llama-server's /embedding tokenizes a string (add_special=true, parse_special=true)."""
    return model.tokenize(text, add_special=True, parse_special=True)


def llama_embed(model: LlamaModel, text: str) -> tuple[np.ndarray, list[int]]:
    tokens = embed_tokens(model, text)
    return _run(model, tokens), tokens


def rerank_prompt_tokens(model: LlamaModel, query: str, document: str) -> tuple[str | None, list[int]]:
    ll = model.ll
    tmpl = ll.llama_model_chat_template(model.ptr, b"rerank")
    if tmpl:
        prompt = tmpl.decode("utf-8").replace("{query}", query).replace("{document}", document)
        return prompt, model.tokenize(prompt, add_special=False, parse_special=True)
    v = model.vocab
    q = model.tokenize(query, add_special=False, parse_special=False)
    d = model.tokenize(document, add_special=False, parse_special=False)
    eos = ll.llama_vocab_eos(v)
    if eos == ll.LLAMA_TOKEN_NULL:
        eos = ll.llama_vocab_sep(v)
    out = [ll.llama_vocab_bos(v)] if ll.llama_vocab_get_add_bos(v) else []
    out += q
    out += [eos] if ll.llama_vocab_get_add_eos(v) else []
    out += [ll.llama_vocab_sep(v)] if ll.llama_vocab_get_add_sep(v) else []
    out += d
    out += [eos] if ll.llama_vocab_get_add_eos(v) else []
    return None, out


def llama_rank(model: LlamaModel, query: str, document: str) -> tuple[np.ndarray, list[int], str | None]:
    prompt, tokens = rerank_prompt_tokens(model, query, document)
    return _run(model, tokens, model.ll.LLAMA_POOLING_TYPE_RANK), tokens, prompt

"""GGUF rerankers: (query, document) pairs in, relevance scores out, over one ``Session``.

* prepare: the pair template. Decoder rerankers (Qwen3-Reranker) take prefix + body + suffix,
  each tokenised on its own with special tokens read, the body holding the instruction, the
  query and the document (the official transformers recipe); cross-encoders take
  ``[CLS] query [SEP] document [SEP]`` with the document's tokens in segment 1 (see
  ``convert.rerank``). Only the document is ever cut: at its end (``truncate="end"``), at its
  start (``"start"``), or not at all (``"error"`` refuses).
* the session returns the hidden state the head reads (the last token's final-norm state of a
  decoder, [CLS] of an encoder); no logits are computed.
* finish: the head in numpy (``heads.rerank``), then sort best first.

XLM-R cross-encoders (bge-reranker-v2-m3, bge-reranker-base/large) take
``<s> query </s></s> document </s>``: the file's ``add_sep_token`` adds a separator after the
query's frame, as llama-server's rerank prompt does (WordPiece files end every text with
[SEP] already, so theirs is ``[CLS] query [SEP] document [SEP]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine.session import Session, open_session
from .engine.settings import RuntimeSettings
from .errors import InputTooLongError, InvalidInputError, check_text
from .heads.rerank import RerankHead
from . import keys
from .registry import Registry
from .text import normalize, templates
from .text.frame import EMPTY, check_truncate, common_prefix, fit_body

__all__ = ["Reranker", "RerankResult", "check_top_n", "pair_separator"]


@dataclass(frozen=True)
class RerankResult:
    scores: np.ndarray  # float64 (n,), input order
    token_counts: np.ndarray  # int64 (n,)

    @property
    def total_tokens(self) -> int:
        return int(self.token_counts.sum())

    def ranked(self, top_n: int | None = None) -> list[tuple[int, float]]:
        """(index, score) best first; ties keep input order."""
        order = np.argsort(-self.scores, kind="stable")
        if top_n is not None:
            order = order[:top_n]
        return [(int(i), float(self.scores[i])) for i in order]


def check_top_n(top_n) -> None:
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1):
        raise InvalidInputError(f"top_n must be a positive integer (got {top_n!r})", param="top_n")


def pair_separator(meta) -> np.ndarray:
    """Tokens between a cross-encoder's framed query and its document: the separator token where
    the file says ``add_sep_token`` (XLM-R's second ``</s>``); none for WordPiece vocabularies,
    whose frame ends with [SEP] already (llama.cpp appends it to every WPM text)."""
    if not meta.get(keys.LLAMA_ADD_SEP) or meta.get(keys.LLAMA_TOKENIZER) == "bert":
        return EMPTY
    sep = meta.get(keys.LLAMA_SEP_ID, meta.get(keys.LLAMA_EOS_ID))
    return EMPTY if sep is None else np.array([int(sep)], np.int32)


class Reranker:
    """A GGUF reranker on llama.cpp. ``model``: a .gguf path or a converted models.toml name;
    ``settings`` / keyword arguments as for ``Embedder``; ``session=`` shares a loaded model."""

    def __init__(self, model: str | Path | None = None, *, settings: RuntimeSettings | None = None,
                 session: Session | None = None, registry: Registry | None = None, embedder=None, **kwargs):
        owned = session is None and embedder is None
        self.session = s = embedder.session if embedder is not None else open_session(
            model, session, settings, registry, kwargs)
        if s.info.task != "rerank":
            name = s.name
            if owned:
                s.close()
            raise InvalidInputError(f"model {name} is an embedding model, not a reranker", param="model")
        self.head = RerankHead.from_tensors(s.gguf.read_tensors("cls."), str(s.info.path),
                                            labels=s.gguf.meta.get(keys.arch_key(s.info.arch, "classifier.output_labels")))
        self.template = s.info.rerank
        self._sep = pair_separator(s.gguf.meta)
        if self.template is not None:
            self._prefix = self._tok(self.template.prefix, special=False)
            self._suffix = self._tok(self.template.suffix, special=False)

    # --- properties ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def max_tokens(self) -> int:
        return self.session.max_tokens

    @property
    def type1_offset(self) -> int:
        """Cross-encoders: token id + offset is the same token in segment 1 (0: no segment table)."""
        return self.session.info.type1_offset

    @property
    def takes_instruction(self) -> bool:
        return self.template is not None and self.template.takes_instruction

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- prepare: pairs -> framed token sequences ---------------------------------------

    def _tok(self, text: str, *, special: bool) -> np.ndarray:
        if not text:
            return EMPTY
        return self.session.tokenize(normalize.apply(self.session.info.text_normalizer, text), add_special=special,
                                     parse_special=True)

    def _too_long(self, index: int, n: int, what: str = "") -> InputTooLongError:
        return InputTooLongError.for_input(index, n, self.max_tokens, what=f"document {index} with the query{what}",
                                           param="documents", fix="set truncate to 'end'")

    def _query_too_long(self, n: int) -> InputTooLongError:
        return InputTooLongError(
            f"the query and its prompt take {n} tokens, leaving no room for a document within the model's "
            f"limit of {self.max_tokens}; shorten the query", n_tokens=n, limit=self.max_tokens, param="query",
        )

    def _pair_template(self, query: str, doc: str, index: int, truncate: str, instruction: str) -> np.ndarray:
        frame = self.session.frame
        head_text, after = templates.split_pair(self.template.body, query, instruction)
        body = self._tok(head_text + doc + after, special=True)
        n_head = len(self._prefix) + len(frame.prefix)
        n_tail = len(frame.suffix) + len(self._suffix)
        toks = np.concatenate([self._prefix, body, self._suffix]).astype(np.int32)
        if len(toks) <= self.max_tokens:
            return toks
        if truncate == "error":
            raise self._too_long(index, len(toks), " and the prompt")
        content = body[len(frame.prefix):len(body) - len(frame.suffix)]
        keep = common_prefix(content, self._tok(head_text, special=False))
        if keep >= self.max_tokens - n_head - n_tail:
            raise self._query_too_long(n_head + n_tail + keep)
        return fit_body(toks, n_head, n_tail, self.max_tokens, truncate, keep)

    def _pair_segments(self, query: str, doc: str, index: int, truncate: str) -> np.ndarray:
        suffix = self.session.frame.suffix
        q = np.concatenate([self._tok(query, special=True), self._sep]).astype(np.int32)
        toks = np.concatenate([q, self._tok(doc, special=False), suffix]).astype(np.int32)
        if len(toks) > self.max_tokens:
            if truncate == "error":
                raise self._too_long(index, len(toks))
            if len(q) + len(suffix) >= self.max_tokens:
                raise self._query_too_long(len(q) + len(suffix))
            toks = fit_body(toks, len(q), len(suffix), self.max_tokens, truncate)
        offset = self.session.info.type1_offset
        if offset:
            toks = toks.copy()
            toks[len(q):] += offset  # the document and its [SEP]: segment 1
        return toks

    def tokenize_pairs(self, query: str, documents: Sequence[str], *, instruction: str | None = None,
                       truncate: str = "end") -> list[np.ndarray]:
        """One framed token sequence per (query, document) pair."""
        check_truncate(truncate)
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string", param="query")
        check_text(query, "the query", param="query")
        if isinstance(documents, str):
            raise InvalidInputError("documents must be a list of strings, not a single string", param="documents")
        if instruction is not None and not self.takes_instruction:
            raise InvalidInputError(f"model {self.name} takes no instruction", param="instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise InvalidInputError("instruction must be a string", param="instruction")
        out = []
        for i, doc in enumerate(documents):
            if not isinstance(doc, str):
                raise InvalidInputError(f"document {i} is not a string", param="documents")
            check_text(doc, f"document {i}", param="documents", index=i)
            if self.template is not None:
                instr = instruction if instruction is not None else (self.template.default_instruction or "")
                out.append(self._pair_template(query, doc, i, truncate, instr))
            else:
                out.append(self._pair_segments(query, doc, i, truncate))
        return out

    # --- finish: rows -> scores ---------------------------------------------------------

    def finish(self, rows: np.ndarray, seqs: Sequence[np.ndarray], raw_scores: bool = False) -> RerankResult:
        counts = np.array([len(s) for s in seqs], dtype=np.int64)
        scores = self.head.scores(rows, raw=raw_scores) if len(seqs) else np.zeros(0, np.float64)
        return RerankResult(scores, counts)

    def score_tokens(self, seqs: list[np.ndarray], *, raw_scores: bool = False) -> np.ndarray:
        if not seqs:
            return np.zeros(0, np.float64)
        return self.finish(self.session.rows(seqs), seqs, raw_scores).scores

    def score(self, query: str, documents: Sequence[str], *, instruction: str | None = None,
              truncate: str = "end", raw_scores: bool = False) -> RerankResult:
        """Scores in input order: P(relevant) in [0, 1], or the logit with ``raw_scores``."""
        seqs = self.tokenize_pairs(query, documents, instruction=instruction, truncate=truncate)
        rows = self.session.rows(seqs) if seqs else np.zeros((0, self.session.n_embd), np.float32)
        return self.finish(rows, seqs, raw_scores)

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None, instruction: str | None = None,
               *, truncate: str = "end", raw_scores: bool = False) -> list[tuple[int, float]]:
        """``(index, score)`` for the documents, best first (the first ``top_n`` only, if given)."""
        check_top_n(top_n)
        return self.score(query, documents, instruction=instruction, truncate=truncate,
                          raw_scores=raw_scores).ranked(top_n)

"""GGUF rerankers: (query, document) pairs in, relevance scores out.

A ``Reranker`` is the embedder's batch runner with another pre- and post-processing:

* pre-process: the pair template. Decoder rerankers (Qwen3-Reranker) take
  prefix + body + suffix, each tokenised on its own with special tokens read, the body
  holding the instruction, the query and the document (the official transformers recipe);
  cross-encoders take ``[CLS] query [SEP] document [SEP]`` with the document's tokens in
  segment 1 (see ``convert.rerank``). Only the document is ever cut: at its end
  (``truncate="end"``), at its start (``"start"``), or not at all (``"error"`` refuses).
* inference: ``Embedder.encode_tokens`` returns the hidden state the head reads (the last
  token's final-norm state of a decoder, [CLS] of an encoder); no logits are computed.
* post-process: the head in numpy (``rerank_head``), then sort best first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import keys, textnorm
from .embedder import Embedder
from .errors import InputTooLongError, InvalidInputError
from .framing import common_prefix, fit_body
from .rerank_head import RerankHead

__all__ = ["Reranker", "RerankResult", "RERANK_TRUNCATE"]

RERANK_TRUNCATE = ("end", "start", "error")
_SLOTS = re.compile(r"\{(instruction|query)\}")


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


class Reranker:
    """A GGUF reranker on llama.cpp. ``model``: a .gguf path or a converted models.toml name."""

    def __init__(self, model: str | Path | None = None, *, embedder: Embedder | None = None, **embedder_kwargs):
        owned = embedder is None
        if embedder is None:
            if model is None:
                raise InvalidInputError("give a model (a .gguf path or a models.toml name)", param="model")
            embedder = Embedder(model, **embedder_kwargs)
        self.embedder = emb = embedder
        if emb.info.task != "rerank":
            name = emb.name
            if owned:
                emb.close()
            raise InvalidInputError(f"model {name} is an embedding model, not a reranker", param="model")
        self.head = RerankHead.from_gguf(emb.info.path)
        meta = emb.model.meta()
        self.body = meta.get(keys.RERANK_BODY)
        self.default_instruction = meta.get(keys.RERANK_INSTRUCTION)
        self.type1_offset = int(meta.get(keys.TYPE1_OFFSET, "0") or 0)
        norm = emb.info.text_normalizer
        self._norm = lambda text: textnorm.apply(norm, text)
        if self.body is not None:
            self._prefix = self._tok(meta.get(keys.RERANK_PREFIX, ""), special=False)
            self._suffix = self._tok(meta.get(keys.RERANK_SUFFIX, ""), special=False)

    @classmethod
    def from_embedder(cls, embedder: Embedder) -> "Reranker":
        return cls(embedder=embedder)

    # --- properties ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.embedder.name

    @property
    def max_tokens(self) -> int:
        return self.embedder.max_tokens

    @property
    def takes_instruction(self) -> bool:
        return self.body is not None and "{instruction}" in self.body

    def close(self) -> None:
        self.embedder.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- pre-processing ----------------------------------------------------------------

    def _tok(self, text: str, *, special: bool) -> np.ndarray:
        if not text:
            return np.zeros(0, np.int32)
        return self.embedder.model.tokenize(self._norm(text), add_special=special, parse_special=True)

    def _too_long(self, index: int, n: int, what: str = "") -> InputTooLongError:
        return InputTooLongError(
            f"document {index} with the query{what} has {n} tokens, more than the model's limit of "
            f"{self.max_tokens}; shorten it or set truncate to 'end'",
            param="documents",
        )

    def _query_too_long(self, n: int) -> InputTooLongError:
        return InputTooLongError(
            f"the query and its prompt take {n} tokens, leaving no room for a document within the model's "
            f"limit of {self.max_tokens}; shorten the query", param="query",
        )

    def _pair_template(self, query: str, doc: str, index: int, truncate: str, instruction: str) -> np.ndarray:
        emb = self.embedder
        before, _, after = self.body.partition("{document}")
        head_text = _SLOTS.sub(lambda m: instruction if m.group(1) == "instruction" else query, before)
        after = _SLOTS.sub(lambda m: instruction if m.group(1) == "instruction" else query, after)
        body = self._tok(head_text + doc + after, special=True)
        n_head = len(self._prefix) + len(emb._prefix)
        n_tail = len(emb._suffix) + len(self._suffix)
        toks = np.concatenate([self._prefix, body, self._suffix]).astype(np.int32)
        if len(toks) <= self.max_tokens:
            return toks
        if truncate == "error":
            raise self._too_long(index, len(toks), " and the prompt")
        content = body[len(emb._prefix):len(body) - len(emb._suffix)]
        keep = common_prefix(content, self._tok(head_text, special=False))
        if keep >= self.max_tokens - n_head - n_tail:
            raise self._query_too_long(n_head + n_tail + keep)
        return fit_body(toks, n_head, n_tail, self.max_tokens, truncate, keep)

    def _pair_segments(self, query: str, doc: str, index: int, truncate: str) -> np.ndarray:
        suffix = self.embedder._suffix
        q = self._tok(query, special=True)
        toks = np.concatenate([q, self._tok(doc, special=False), suffix]).astype(np.int32)
        if len(toks) > self.max_tokens:
            if truncate == "error":
                raise self._too_long(index, len(toks))
            if len(q) + len(suffix) >= self.max_tokens:
                raise self._query_too_long(len(q) + len(suffix))
            toks = fit_body(toks, len(q), len(suffix), self.max_tokens, truncate)
        if self.type1_offset:
            toks = toks.copy()
            toks[len(q):] += self.type1_offset  # the document and its [SEP]: segment 1
        return toks

    def tokenize_pairs(self, query: str, documents: Sequence[str], *, instruction: str | None = None,
                       truncate: str = "end") -> list[np.ndarray]:
        """One framed token sequence per (query, document) pair."""
        if truncate not in RERANK_TRUNCATE:
            raise InvalidInputError(f"truncate must be one of {', '.join(RERANK_TRUNCATE)}", param="truncate")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("query must be a non-empty string", param="query")
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
            if self.body is not None:
                instr = instruction if instruction is not None else (self.default_instruction or "")
                out.append(self._pair_template(query, doc, i, truncate, instr))
            else:
                out.append(self._pair_segments(query, doc, i, truncate))
        return out

    # --- scoring ---------------------------------------------------------------------

    def score_tokens(self, seqs: list[np.ndarray], *, raw_scores: bool = False) -> np.ndarray:
        if not seqs:
            return np.zeros(0, np.float64)
        return self.head.scores(self.embedder.encode_tokens(seqs), raw=raw_scores)

    def score(self, query: str, documents: Sequence[str], *, instruction: str | None = None,
              truncate: str = "end", raw_scores: bool = False) -> RerankResult:
        """Scores in input order: P(relevant) in [0, 1], or the logit with ``raw_scores``."""
        seqs = self.tokenize_pairs(query, documents, instruction=instruction, truncate=truncate)
        counts = np.array([len(s) for s in seqs], dtype=np.int64)
        return RerankResult(self.score_tokens(seqs, raw_scores=raw_scores), counts)

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None, instruction: str | None = None,
               *, truncate: str = "end", raw_scores: bool = False) -> list[tuple[int, float]]:
        """``(index, score)`` for the documents, best first (the first ``top_n`` only, if given)."""
        check_top_n(top_n)
        return self.score(query, documents, instruction=instruction, truncate=truncate,
                          raw_scores=raw_scores).ranked(top_n)


def check_top_n(top_n) -> None:
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 1):
        raise InvalidInputError(f"top_n must be a positive integer (got {top_n!r})", param="top_n")

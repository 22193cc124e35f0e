"""GGUF in, float32 vectors out: ``prepare`` (texts -> framed token sequences) and ``finish``
(pooled rows -> normalised, Matryoshka-cut vectors) over one ``Session``.

    with Embedder("all-minilm-l6-v2") as emb:          # or a .gguf path
        vecs = emb.embed(["hello", "world"]).embeddings  # float32 (2, 384), L2-normalised

Everything else (the CLI, the server, corpus jobs, Ray) builds on ``tokenize`` / ``finish``
or on ``embed`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import choices
from .engine.session import Session, open_session
from .engine.settings import RuntimeSettings
from .errors import InputTooLongError, InvalidInputError, ModelLoadError, check_text
from .heads import multivector as mv
from .heads.pooling import pool_picked, postprocess
from .model.stored_heads import read_head, sparse_skip_ids
from .notes import warn_once
from .registry import Registry
from .text import normalize, templates
from .text.frame import CLIP_MARGIN, EMPTY, EXACT_COUNT_CHARS, check_truncate, clip_chars, common_prefix
from .text.late import LatePlan, join_chunks, plan_late

__all__ = ["Embedder", "EmbedResult"]

@dataclass(frozen=True)
class EmbedResult:
    """What ``embed`` gives, in input order. Without ``outputs``, only ``embeddings``; with them, each asked
    for (``embeddings`` is None unless "dense" was)."""

    embeddings: np.ndarray | None  # float32 (n, d)
    token_counts: np.ndarray  # int64 (n,), tokens embedded per input (after truncation)
    sparse: list[mv.SparseVector] | None = None  # bge-m3's lexical weights per input
    colbert: list[np.ndarray] | None = None  # bge-m3's multi-vectors per input, float32 (tokens - 1, d)
    token_vectors: list[mv.TokenVectors] | None = None  # every token's id and vector per input

    @property
    def total_tokens(self) -> int:
        return int(self.token_counts.sum())


class Embedder:
    """A GGUF embedding model on llama.cpp. Not re-entrant: calls are serialised.

    ``Embedder(model, settings=RuntimeSettings(...))``, or the keyword arguments of
    ``RuntimeSettings`` directly (``n_gpu_layers``, ``n_ctx``, ``n_threads``, ``batch_tokens``,
    ``max_seqs``, ``flash_attn``, ``kv_type``, ``pooling``, ``fast_path``, ``vram``, ``models_dir``,
    ``verbose``); ``session=`` shares a loaded model."""

    def __init__(self, model: str | Path | None = None, *, settings: RuntimeSettings | None = None,
                 session: Session | None = None, registry: Registry | None = None, **kwargs):
        self.session = open_session(model, session, settings, registry, kwargs)
        self._heads: dict[str, mv.Head] = {}

    # --- properties ----------------------------------------------------------------

    @property
    def info(self):
        return self.session.info

    @property
    def dimensions(self) -> int:
        return self.session.n_embd

    @property
    def name(self) -> str:
        return self.session.name

    @property
    def max_tokens(self) -> int:
        return self.session.max_tokens

    @property
    def batch_tokens(self) -> int:
        return self.session.batch_tokens

    @property
    def max_seqs(self) -> int:
        return self.session.max_seqs

    @property
    def n_vocab(self) -> int:
        return self.session.n_vocab

    @property
    def fast_path(self) -> bool:
        return self.session.fast_path

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- prepare: texts -> framed token sequences ------------------------------------

    def prompt_for(self, input_type: str | None, instruction: str | None) -> str:
        if input_type == "query" and instruction is None and self.info.causal and "query" not in self.info.prompts:
            warn_once(f"model {self.name} has no known query prompt; queries are embedded as they are "
                      "(give one with --query-prompt)")
        return templates.prompt_for(self.info.prompts, self.name, input_type, instruction)

    def tokenize(self, texts: Sequence[str], *, input_type: str | None = None, instruction: str | None = None,
                 truncate: str = "error") -> list[np.ndarray]:
        check_truncate(truncate)
        prompt = self.prompt_for(input_type, instruction)
        norm, s = self.info.text_normalizer, self.session
        prompt_ids = s.tokenize(normalize.apply(norm, prompt), add_special=False) if prompt else EMPTY
        n_pre, limit = len(s.frame.prefix), self.max_tokens
        out = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"input {i} is not a string", param="input")
            check_text(text, f"input {i}", param="input", index=i)
            toks = self._framed(i, text, prompt, truncate)
            keep = 0
            if len(prompt_ids) and len(toks) > limit:
                # the prompt's tokens, up to where the text's first word merges into them
                keep = common_prefix(toks[n_pre:n_pre + len(prompt_ids)], prompt_ids)
            out.append(s.frame.fit(toks, limit, truncate, i, keep))
            if s.eos_id is not None and out[-1][-1] != s.eos_id:  # last-token pooling reads it
                raise ModelLoadError(f"input {i} does not end with {self.info.eos!r} after framing")
        return out

    def _framed(self, index: int, text: str, prompt: str, truncate: str) -> np.ndarray:
        """A text's framed tokens. A text far longer than the model takes (a 50 MB line) is not
        tokenized whole when the part of it that can matter already exceeds the limit: the end
        (or start) it is cut to, or, to refuse one of over a million characters, a prefix that alone
        has too many tokens (shorter ones are counted exactly, so the error says by how much)."""
        s, norm, limit = self.session, self.info.text_normalizer, self.max_tokens
        clip = clip_chars(limit, s.max_piece_bytes) if len(text) > limit else len(text)
        if len(text) > clip and (truncate != "error" or len(text) > EXACT_COUNT_CHARS):
            part = text[-clip:] if truncate == "start" else text[:clip]
            toks = s.frame_text(normalize.apply(norm, prompt + part))
            if len(toks) > limit + CLIP_MARGIN:
                if truncate == "error":
                    raise InputTooLongError.for_input(index, len(toks), limit, at_least=True)
                return toks
        return s.frame_text(normalize.apply(norm, prompt + text))

    def frame_tokens(self, ids: Sequence[int], index: int = 0, truncate: str = "error") -> np.ndarray:
        """Token ids from a client: checked against the vocabulary, special tokens added unless present."""
        frame = self.session.frame
        return frame.fit(frame.wrap(ids, self.n_vocab, index), self.max_tokens, truncate, index)

    def frame_prompt(self, prompt: str | Sequence[int | str], index: int = 0, truncate: str = "error") -> np.ndarray:
        """One prompt as llama-server takes them: a text (framed as ``tokenize`` frames it, an empty one
        too), or token ids with texts among them (each text's tokens without special tokens, in place),
        then framed as token ids are."""
        if isinstance(prompt, str):
            check_text(prompt, f"input {index}", param="input", index=index)
            return self.session.frame.fit(self._framed(index, prompt, "", truncate), self.max_tokens, truncate, index)
        norm, ids = self.info.text_normalizer, []
        for piece in prompt:
            if isinstance(piece, str):
                check_text(piece, f"input {index}", param="input", index=index)
                ids.extend(self.session.tokenize(normalize.apply(norm, piece), add_special=False).tolist())
            else:
                ids.append(piece)
        if not ids:
            raise InvalidInputError(f"input {index} has no tokens", param="input")
        return self.frame_tokens(ids, index, truncate)

    def tokens_of(self, texts: Sequence[str], *, add_special: bool = True, input_type: str | None = None,
                  truncate: str = "error") -> list[np.ndarray]:
        """Each text's token ids as they are embedded, or (``add_special`` false) less the special tokens."""
        seqs = self.tokenize(texts, input_type=input_type, truncate=truncate)
        head, tail = len(self.session.frame.prefix), len(self.session.frame.suffix)
        return seqs if add_special else [s[head:len(s) - tail] for s in seqs]

    def detokenize(self, ids: Sequence[int], *, special: bool = False) -> str:
        """The text of token ids (``special``: with the special tokens' text); ids outside the vocabulary
        are refused. llama.cpp's WordPiece decoder puts a space before each word: the first is dropped."""
        bad = [i for i in ids if not 0 <= i < self.n_vocab]
        if bad:
            raise InvalidInputError(f"token id {bad[0]} is outside 0..{self.n_vocab - 1}", param="ids")
        text = self.session.model.detokenize(ids, special=special)
        return text[1:] if text.startswith(" ") and self.session.model.detokenize(
            self.session.tokenize("a", add_special=False)).startswith(" ") else text

    def check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is None:
            return
        lo, hi = self.info.dimension_range
        if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)) or not lo <= dimensions <= hi:
            if lo == hi:
                msg = f"model {self.name} is not Matryoshka-trained; its only dimension is {hi}"
            else:
                msg = f"dimensions must be between {lo} and {hi} for model {self.name}"
            raise InvalidInputError(f"{msg} (got {dimensions!r})", param="dimensions")

    # --- finish: rows -> vectors ---------------------------------------------------------

    @staticmethod
    def finish(rows: np.ndarray, seqs: Sequence[np.ndarray], dimensions: int | None = None,
               normalize: bool = True) -> EmbedResult:
        counts = np.array([len(s) for s in seqs], dtype=np.int64)
        return EmbedResult(postprocess(rows, dimensions, normalize), counts)

    def check_outputs(self, outputs: Sequence[str]) -> tuple[str, ...]:
        """``outputs`` as a tuple in ``choices.OUTPUTS`` order; a one-line error for an unknown one or a head
        the model does not have."""
        if isinstance(outputs, str) or not outputs:
            raise InvalidInputError(f"outputs must be a non-empty list of {', '.join(choices.OUTPUTS)}", param="outputs")
        unknown = [o for o in outputs if o not in choices.OUTPUTS]
        if unknown:
            raise InvalidInputError(f"unknown output {unknown[0]!r}; choose from {', '.join(choices.OUTPUTS)}",
                                    param="outputs")
        has = self.info.outputs
        missing = [o for o in choices.OUTPUTS if o in outputs and o not in has]
        if missing:
            raise InvalidInputError(f"model {self.name} has no {' or '.join(missing)} head; it gives "
                                    f"{', '.join(has)}", param="outputs")
        return tuple(o for o in choices.OUTPUTS if o in outputs)

    def head(self, kind: str) -> mv.Head:
        """The file's ``kind`` head ("sparse" | "colbert"), read once."""
        if kind not in self._heads:
            self._heads[kind] = read_head(self.session.gguf, kind, self.dimensions)
        return self._heads[kind]

    def finish_tokens(self, hidden: list[np.ndarray], seqs: Sequence[np.ndarray], outputs: tuple[str, ...],
                      dimensions: int | None = None, normalize: bool = True) -> EmbedResult:
        """Every token's state (``Session.token_rows``) -> the outputs asked for, from that one pass."""
        counts = np.array([len(s) for s in seqs], dtype=np.int64)
        dense = sparse = colbert = tokens = None
        if "dense" in outputs:
            dense = postprocess(mv.pool_tokens(hidden, self.info.pooling, self.dimensions), dimensions, normalize)
        if "sparse" in outputs:
            head, skip = self.head("sparse"), sparse_skip_ids(self.session.gguf)
            sparse = [mv.sparse_vector(h, s, head, skip) for h, s in zip(hidden, seqs)]
        if "colbert" in outputs:
            colbert = [mv.colbert_vectors(h, self.head("colbert"), normalize) for h in hidden]
        if "tokens" in outputs:
            tokens = [mv.token_vectors(h, s, dimensions, normalize) for h, s in zip(hidden, seqs)]
        return EmbedResult(dense, counts, sparse, colbert, tokens)

    def outputs_for(self, seqs: list[np.ndarray], outputs: tuple[str, ...], dimensions: int | None = None,
                    normalize: bool = True, progress: Callable[[int], None] | None = None,
                    batch_invariant: bool = False) -> EmbedResult:
        """The outputs of framed token sequences, from one encoder pass with every token's state."""
        rows = self.session.token_rows(seqs, progress, alone=batch_invariant)
        return self.finish_tokens(rows, seqs, outputs, dimensions, normalize)

    # --- the API ---------------------------------------------------------------------

    def embed(self, texts: Sequence[str], *, input_type: str | None = None, instruction: str | None = None,
              dimensions: int | None = None, normalize: bool = True, truncate: str = "error",
              progress: Callable[[int], None] | None = None, outputs: Sequence[str] | None = None,
              batch_invariant: bool = False) -> EmbedResult:
        """``outputs``: any of ``choices.OUTPUTS`` ("dense", "sparse", "colbert", "tokens"), all from one pass;
        without it, the dense vectors alone (as ``EmbedResult.embeddings``). ``batch_invariant``: each text
        runs in a llama.cpp batch of its own, so its vector is bit-identical in any call, batch and process
        on this machine (slower for short texts; what stable int8 and binary codes rest on)."""
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings, not a single string", param="input")
        self.check_dimensions(dimensions)
        wanted = None if outputs is None else self.check_outputs(outputs)
        seqs = self.tokenize(texts, input_type=input_type, instruction=instruction, truncate=truncate)
        if wanted is not None:
            return self.outputs_for(seqs, wanted, dimensions, normalize, progress, batch_invariant)
        return self.finish(self.session.rows(seqs, progress, alone=batch_invariant), seqs, dimensions, normalize)

    def embed_tokens(self, token_lists: Sequence[Sequence[int]], *, dimensions: int | None = None,
                     normalize: bool = True, truncate: str = "error") -> EmbedResult:
        self.check_dimensions(dimensions)
        check_truncate(truncate)
        seqs = [self.frame_tokens(ids, i, truncate) for i, ids in enumerate(token_lists)]
        return self.finish(self.session.rows(seqs), seqs, dimensions, normalize)

    # --- late chunking: one pass over a document, pooled per chunk span (see text/late.py) ---

    def check_late_chunking(self) -> None:
        """Late chunking needs a bidirectional encoder (mean or CLS pooling); refuse anything else."""
        info = self.info
        if info.task != "embed":
            why = "is a reranker"
        elif info.pooling == "last" or info.causal:
            why = (f"pools its last token ({info.pooling} pooling, a decoder): a chunk's tokens see only "
                   "the text before them")
        else:
            return
        raise InvalidInputError(f"model {self.name} {why}; late chunking needs a mean- or CLS-pooled encoder",
                                param="late_chunking")

    def plan_late(self, document: str, spans, *, input_type: str | None = None,
                  instruction: str | None = None) -> LatePlan:
        """The model passes for ``document`` and the token rows each of its chunk ``spans`` pools."""
        self.check_late_chunking()
        check_text(document, "the document", param="input")
        s, norm = self.session, self.info.text_normalizer
        try:
            return plan_late(lambda t: s.tokenize(normalize.apply(norm, t), add_special=False), document, spans,
                             prompt=self.prompt_for(input_type, instruction), prefix=s.frame.prefix,
                             suffix=s.frame.suffix, limit=self.max_tokens)
        except ValueError as exc:
            raise InvalidInputError(str(exc), param="input") from None

    def embed_late_chunks_many(self, documents: Sequence[str], spans: Sequence, *, input_type: str | None = None,
                               instruction: str | None = None, dimensions: int | None = None,
                               normalize: bool = True, batch_invariant: bool = False) -> list[EmbedResult]:
        """Late-chunked vectors of several documents (``spans[i]``: document i's (start, end) character
        spans, in order), all their passes run together; ``token_counts``: the tokens each chunk pools."""
        self.check_dimensions(dimensions)
        plans = [self.plan_late(d, sp, input_type=input_type, instruction=instruction)
                 for d, sp in zip(documents, spans, strict=True)]
        passes = self.session.token_rows([w for p in plans for w in p.windows], alone=batch_invariant)
        out, first = [], 0
        for p in plans:
            mine = passes[first:first + len(p.windows)]
            first += len(p.windows)
            counts = np.array([len(rows) for _, rows in p.chunks], dtype=np.int64)
            out.append(EmbedResult(postprocess(pool_picked(mine, p.chunks), dimensions, normalize), counts))
        return out

    def embed_late_chunks(self, document: str, spans, **kwargs) -> EmbedResult:
        """One vector per chunk span of ``document`` from one pass over it (passes of the model's
        limit when it is longer): each chunk's tokens are mean-pooled where they saw the whole text."""
        return self.embed_late_chunks_many([document], [spans], **kwargs)[0]

    def embed_chunks_late(self, chunks: Sequence[str], **kwargs) -> EmbedResult:
        """Jina's ``late_chunking``: ``chunks`` are one document's pieces in order, joined (a space
        between two that have no whitespace at the seam) and embedded as ``embed_late_chunks``."""
        if isinstance(chunks, str) or not chunks:
            raise InvalidInputError("chunks must be a non-empty list of strings", param="input")
        for i, c in enumerate(chunks):
            if not isinstance(c, str) or not c.strip():
                raise InvalidInputError(f"input {i} is not a string with text", param="input")
        document, spans = join_chunks(chunks)
        return self.embed_late_chunks(document, spans, **kwargs)

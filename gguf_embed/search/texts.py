"""The texts of hits, for a reranker: the index's ``text`` column, else the corpus its manifest names
(a chunk cut by its ``start``/``end``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..corpus.readers import read_corpus
from .hits import Hit
from .index import SearchError, SearchIndex

__all__ = ["fill_texts"]


def _input_path(index: SearchIndex, name: str) -> Path:
    for p in (Path(name), index.path.parent / name):
        if name != "-" and p.exists():
            return p
    raise SearchError(f"{index.path.name} stores no text and its input {name!r} is not here any more; "
                      "the reranker needs the documents' texts")


def _corpus_texts(index: SearchIndex, ids: set[str]) -> dict[str, str]:
    m = index.manifest
    inputs = m.get("inputs") or []
    if not inputs:
        raise SearchError(f"{index.path.name} stores no text and its manifest names no input files")
    found: dict[str, str] = {}
    for name in inputs:
        prefix = f"{name}:" if len(inputs) > 1 else ""
        corpus = read_corpus([str(_input_path(index, name))], text_field=m.get("text_field") or "text",
                             id_field=m.get("id_field") or "id", input_format_name=m.get("input_format"),
                             skip_bad=True)
        found.update({prefix + r.id: r.text for r in corpus.records if prefix + r.id in ids})
    return found


def fill_texts(index: SearchIndex, blocks: list[list[Hit]]) -> list[list[Hit]]:
    """The hits with their texts: the index's ``text`` column, else the corpus its manifest names."""
    need = {h.id for block in blocks for h in block if h.text is None}
    if not need:
        return blocks
    docs = _corpus_texts(index, need)
    lost = sorted(need - set(docs))
    if lost:
        raise SearchError(f"document {lost[0]!r} is not in {', '.join(index.manifest['inputs'])} any more; "
                          "the reranker needs the documents' texts")
    return [[h if h.text is not None else replace(h, text=docs[h.id] if h.start is None else docs[h.id][h.start:h.end])
             for h in block] for block in blocks]

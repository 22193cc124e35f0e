"""A corpus read in windows: records -> (chunks) -> rows, ``JobSpec.window`` rows at a time.

A window holds its records, each row's record, chunk number and character span, and its text
(for late chunking, the unit each row pools and its cache key). Corpus jobs of every kind
(``stream``: dense vectors through the store; ``outputs``: per-token outputs) walk the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..embedder import Embedder
from .backends import token_counter
from .chunking import chunk_spans
from .late_chunks import LateUnit, span_key
from .records import Record
from .spec import JobSpec, JobStats

__all__ = ["Window", "windows"]


@dataclass
class Window:
    records: list[Record] = field(default_factory=list)
    rec: list[int] = field(default_factory=list)  # index into records, per row
    chunk: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    units: list[LateUnit] = field(default_factory=list)  # late chunking: what each row pools
    keys: list[bytes] = field(default_factory=list)  # late chunking: each row's cache key


def windows(records: Iterable[Record], spec: JobSpec, emb: Embedder, stats: JobStats) -> Iterator[Window]:
    count = token_counter(emb, spec) if spec.chunk_tokens else None
    win = Window()
    for record in records:
        stats.documents += 1
        spans = chunk_spans(record.text, count, spec.chunk_tokens, spec.chunk_overlap) if count else [(0, None)]
        win.records.append(record)
        if spec.late_chunking:
            spans = tuple((a, len(record.text) if b is None else b) for a, b in spans)
            win.units += [LateUnit(record.text, spans, c) for c in range(len(spans))]
            win.keys += [span_key(record.text, a, b) for a, b in spans]
        for c, (a, b) in enumerate(spans):
            win.rec.append(len(win.records) - 1)
            win.chunk.append(c)
            win.start.append(a)
            win.end.append(len(record.text) if b is None else b)
            win.texts.append(record.text if b is None else record.text[a:b])
        if len(win.texts) >= spec.window:
            yield win
            win = Window()
    if win.texts:
        yield win

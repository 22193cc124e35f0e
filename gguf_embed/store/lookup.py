"""Look up, then embed what is missing: the one path by which corpus jobs, the server and Ray
actors fill a store.

A caller looks its distinct keys up (``VectorCache.get_many``), then hands the missing ones and
the items behind them (texts, token sequences, late-chunk units) to ``embed_missing`` with a
backend; every batch the backend yields is committed to the store in one transaction as it
comes back, so a process killed at any moment loses only the batch in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .cache import Space, VectorCache

__all__ = ["Batch", "Backend", "Found", "embed_missing", "distinct"]


@dataclass
class Batch:
    positions: np.ndarray  # indices into the items handed to the backend
    vectors: np.ndarray  # float32 (len(positions), d), post-processed
    tokens: np.ndarray  # int64 (len(positions),)
    bad: dict[int, str] = field(default_factory=dict)  # position -> why it cannot be embedded


#: items in, embedded batches out (in this process, on the server's scheduler, or on Ray actors)
Backend = Callable[[Sequence], Iterator[Batch]]
#: key -> (vector, tokens)
Found = dict[bytes, tuple[np.ndarray, int]]


def distinct(keys: Sequence[bytes]) -> tuple[list[bytes], dict[bytes, int]]:
    """The distinct keys in first-seen order, and where each first appears."""
    first: dict[bytes, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    return list(first), first


def embed_missing(store: VectorCache, space: Space, missing: Sequence[bytes], items: Sequence, backend: Backend,
                  found: Found) -> Iterator[tuple[list[bytes], Batch]]:
    """Embed ``items`` (one per key of ``missing``) through ``backend``: each batch is committed to the
    store, added to ``found`` and yielded with its keys (the caller counts it and reads ``Batch.bad``)."""
    for batch in backend(items):
        ks = [missing[p] for p in batch.positions]
        if ks:
            store.put_many(space, ks, batch.vectors, batch.tokens)
        for k, v, n in zip(ks, batch.vectors, batch.tokens):
            found[k] = (v, int(n))
        yield ks, batch

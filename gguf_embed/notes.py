"""One-line warnings on stderr, each text once per process: what may make a model's vectors wrong
(an architecture gguf-embed does not know, an EmbeddingGemma file without its Dense layers)."""

from __future__ import annotations

import sys

__all__ = ["warn_once"]

_warned: set[str] = set()


def warn_once(note: str) -> None:
    """``gguf-embed: NOTE`` on stderr, once per process for the same text."""
    if note not in _warned:
        _warned.add(note)
        sys.stderr.write(f"gguf-embed: {note}\n")

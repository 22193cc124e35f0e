"""What a corpus is made of: records with ids and places, and the ones that cannot be embedded."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Record", "BadRecord", "Corpus"]


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    where: str  # "FILE line N" / "FILE row N" / "FOLDER/FILE"


@dataclass(frozen=True)
class BadRecord:
    where: str
    id: str | None
    error: str

    def to_json(self) -> dict:
        return {"where": self.where, "id": self.id, "error": self.error}


@dataclass
class Corpus:
    records: list[Record] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

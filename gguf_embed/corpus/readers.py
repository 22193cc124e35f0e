"""Corpus readers: .txt, .jsonl, .csv, .parquet, folders of .txt/.md, stdin.

Every record gets an id and a place (file and line/row) for error messages. A bad record
stops the read with a one-line error naming that place, or with ``skip_bad`` is set aside.

``iter_corpus`` yields records lazily (a line, a CSV row, a Parquet batch or a file at a time), so a
corpus never has to fit in memory. What it keeps grows only with the ids: duplicate ids are found
with an in-memory map of id -> first place (about 150 bytes an id: 15 MB for 100k documents),
chosen over an on-disk set for speed; the bad records set aside are kept for the errors file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import BadInputError, text_problem
from ..text.files import read_lines  # noqa: F401 - the old import path
from ..text.files import byte_lines, text_lines
from .records import BadRecord, Corpus, Record
from .seen import SeenIds

__all__ = ["Record", "BadRecord", "Corpus", "BadInputError", "read_corpus", "iter_corpus", "read_lines", "read_documents",
           "input_format", "INPUT_FORMATS"]

INPUT_FORMATS = ("txt", "jsonl", "csv", "parquet", "folder")
FOLDER_SUFFIXES = (".txt", ".md")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def input_format(name: str, given: str | None = None) -> str:
    if given:
        return given
    if name != "-" and Path(name).is_dir():
        return "folder"
    return SUFFIX_FORMATS.get(Path(name).suffix.lower(), "txt")


class _Collector:
    """Checks records as they come: text present, a non-empty string UTF-8 can encode; ids unique."""

    def __init__(self, bad: list[BadRecord], skip_bad: bool, prefix: str, text_field: str):
        self.bad_records, self.skip_bad, self.prefix, self.text_field = bad, skip_bad, prefix, text_field
        self.seen: SeenIds | dict[str, str] = {}

    def bad(self, where: str, rid: str | None, error: str) -> None:
        if not self.skip_bad:
            raise BadInputError(f"{where}: {error}")
        self.bad_records.append(BadRecord(where, rid, error))

    def add(self, where: str, rid, text, *, missing: bool = False) -> Record | None:
        """The record, or None when it is bad (set aside with ``skip_bad``)."""
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            return self.bad(where, None, f"id must be a string or an integer, not {type(rid).__name__}")
        if isinstance(rid, str) and (why := text_problem(rid)):
            return self.bad(where, None, f"the id {why}")
        rid = self.prefix + str(rid)
        if missing:
            return self.bad(where, rid, f"missing field {self.text_field!r}")
        if not isinstance(text, str):
            kind = "null" if text is None else type(text).__name__
            return self.bad(where, rid, f"field {self.text_field!r} is {kind}, not a string")
        if not text.strip():
            return self.bad(where, rid, "empty text")
        if why := text_problem(text):
            return self.bad(where, rid, f"field {self.text_field!r} {why}")
        if (nul := text.find("\x00")) >= 0:  # valid JSON ("\u0000"), but a sign of binary data or a broken extraction
            return self.bad(where, rid, f"field {self.text_field!r} has a NUL character at character {nul}")
        if rid in self.seen:
            return self.bad(where, rid, f"duplicate id {rid!r} (first at {self.seen[rid]})")
        self.seen[rid] = where
        return Record(rid, text, where)


def _read_txt(name: str, col: _Collector, stdin) -> Iterator[Record | None]:
    n = 0
    for raw in text_lines(name, stdin):
        for line in raw.splitlines():
            n += 1
            if line.strip():
                yield col.add(f"{name} line {n}", n, line)


def _jsonl_objects(name: str, stdin) -> Iterator[tuple[int, str, dict | None, str | None]]:
    """(line number, place, object, why not) for every non-empty line of a JSONL file."""
    n = 0
    for raw in (part for chunk in byte_lines(name, stdin) for part in chunk.splitlines()):
        n += 1
        where = f"{name} line {n}"
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield n, where, None, f"not UTF-8 text (byte {exc.start})"
            continue
        except json.JSONDecodeError as exc:
            yield n, where, None, f"malformed JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(obj, dict):
            yield n, where, None, f"not a JSON object but {type(obj).__name__}"
            continue
        yield n, where, obj, None


def _read_jsonl(name: str, col: _Collector, stdin, text_field: str, id_field: str) -> Iterator[Record | None]:
    for n, where, obj, why in _jsonl_objects(name, stdin):
        if why is not None:
            col.bad(where, None, why)
            continue
        yield col.add(where, obj.get(id_field, n), obj.get(text_field), missing=text_field not in obj)


def read_documents(name: str, text_field: str = "text", stdin=None) -> list[str]:
    """The ``text_field`` string of every object in a JSONL file ('-' for stdin), in order; no ids."""
    docs = []
    for _n, where, obj, why in _jsonl_objects(name, stdin):
        if why is None and not isinstance(obj.get(text_field), str):
            why = f"no string field {text_field!r}"
        if why is None and (problem := text_problem(obj[text_field])):
            why = f"field {text_field!r} {problem}"
        if why is not None:
            raise BadInputError(f"{where}: {why}")
        docs.append(obj[text_field])
    return docs


def _read_csv(name: str, col: _Collector, stdin, text_field: str, id_field: str) -> Iterator[Record | None]:
    csv.field_size_limit(1 << 30)
    reader = csv.DictReader(text_lines(name, stdin), strict=True)  # an unclosed quote is an error, not a merged record
    columns = reader.fieldnames or []
    if text_field not in columns:
        raise BadInputError(f"{name}: no column {text_field!r} (columns: {', '.join(columns) or 'none'})")
    start = reader.line_num + 1  # a quoted field may span lines: a record is named by its first line
    try:
        for row in reader:
            rid = row.get(id_field) if id_field in columns else start
            yield col.add(f"{name} line {start}", rid if rid is not None else start, row[text_field])
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BadInputError(f"{name} line {start}: malformed CSV ({exc})") from None


def _read_parquet(name: str, col: _Collector, text_field: str, id_field: str) -> Iterator[Record | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(name)
    if not path.is_file():
        raise BadInputError(f"{name} does not exist")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"{name} is not a Parquet file ({str(exc).splitlines()[0]})") from None
    schema = pf.schema_arrow
    if text_field not in schema.names:
        raise BadInputError(f"{name}: no column {text_field!r} (columns: {', '.join(schema.names)})")
    ttype = schema.field(text_field).type
    if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)):
        raise BadInputError(f"{name}: column {text_field!r} is {ttype}, not text")
    has_id = id_field in schema.names
    if has_id:
        itype = schema.field(id_field).type
        if not (pa.types.is_string(itype) or pa.types.is_large_string(itype) or pa.types.is_integer(itype)):
            raise BadInputError(f"{name}: column {id_field!r} is {itype}, not a string or integer")
    row = 0
    for batch in pf.iter_batches(columns=[text_field] + ([id_field] if has_id else []), batch_size=65536):
        texts = _pylist(batch.column(0))
        ids = _pylist(batch.column(1)) if has_id else range(row, row + len(texts))
        for i, (rid, text) in enumerate(zip(ids, texts)):
            where = f"{name} row {row + i}"
            if rid is None:
                col.bad(where, None, f"{id_field!r} is null")
            elif isinstance(rid, UnicodeDecodeError):
                col.bad(where, None, f"{id_field!r} is not UTF-8 text (byte {rid.start})")
            elif isinstance(text, UnicodeDecodeError):
                col.bad(where, col.prefix + str(rid), f"field {text_field!r} is not UTF-8 text (byte {text.start})")
            else:
                yield col.add(where, rid, text)
        row += len(texts)


def _pylist(column) -> list:
    """A Parquet column's values; a string that is not UTF-8 (Arrow does not check on read) comes
    back as its UnicodeDecodeError."""
    import pyarrow as pa

    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        return [v if v is None else _utf8(v) for v in column.cast(pa.binary()).to_pylist()]


def _utf8(data: bytes) -> str | UnicodeDecodeError:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc


def _read_folder(name: str, col: _Collector) -> Iterator[Record | None]:
    root = Path(name)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise BadInputError(f"{name} is a folder with no .txt or .md files")
    for p in files:
        rel = p.relative_to(root).as_posix()
        where = str(p)
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            col.bad(where, rel, f"not UTF-8 text (byte {exc.start})")
            continue
        except OSError as exc:
            col.bad(where, rel, f"cannot read: {exc.strerror}")
            continue
        if "\x00" in text:
            col.bad(where, rel, "looks binary, not text")
            continue
        yield col.add(where, rel, text)


def _records_of(kind: str, name: str, col: _Collector, stdin, text_field: str, id_field: str):
    if kind == "txt":
        return _read_txt(name, col, stdin)
    if kind == "jsonl":
        return _read_jsonl(name, col, stdin, text_field, id_field)
    if kind == "csv":
        return _read_csv(name, col, stdin, text_field, id_field)
    if kind == "parquet":
        return _read_parquet(name, col, text_field, id_field)
    if kind == "folder":
        return _read_folder(name, col)
    raise BadInputError(f"unknown input format {kind!r}")  # pragma: no cover - checked by the CLI's choice


def iter_corpus(inputs: Sequence[str], *, text_field: str = "text", id_field: str = "id", skip_bad: bool = False,
                input_format_name: str | None = None, stdin=None, bad: list[BadRecord] | None = None
                ) -> Iterator[Record]:
    """Read and check every input lazily, record by record; bad ones go to ``bad`` with ``skip_bad``.
    Ids get a ``NAME:`` prefix when there is more than one input."""
    bad = [] if bad is None else bad
    seen = SeenIds()  # the duplicate-id check, in bounded memory
    try:
        for name in inputs:
            kind = input_format(name, input_format_name)
            col = _Collector(bad, skip_bad, f"{name}:" if len(inputs) > 1 else "", text_field)
            col.seen = seen
            for record in _records_of(kind, name, col, stdin, text_field, id_field):
                if record is not None:
                    yield record
    finally:
        seen.close()


def read_corpus(inputs: Sequence[str], *, text_field: str = "text", id_field: str = "id", skip_bad: bool = False,
                input_format_name: str | None = None, stdin=None) -> Corpus:
    """Every record of ``inputs`` in memory (``iter_corpus`` streams them)."""
    corpus = Corpus(kinds=[input_format(name, input_format_name) for name in inputs])
    corpus.records = list(iter_corpus(inputs, text_field=text_field, id_field=id_field, skip_bad=skip_bad,
                                      input_format_name=input_format_name, stdin=stdin, bad=corpus.bad))
    return corpus

"""Text files read as text: UTF-8 checked (a byte that is not, or a NUL, is one line naming the file
and byte), '-' for stdin, lines read as they are needed; ``read_lines`` gives one text per line."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import BadInputError

__all__ = ["read_lines", "read_bytes", "open_binary", "byte_lines", "text_lines", "decode", "unreadable"]


def unreadable(name: str, exc: OSError) -> BadInputError:
    """The one-line error for a file that cannot be opened or read."""
    if isinstance(exc, IsADirectoryError):
        return BadInputError(f"{name} is a folder, not a text file")
    if isinstance(exc, FileNotFoundError):
        return BadInputError(f"{name} does not exist")
    return BadInputError(f"cannot read {name}: {exc.strerror}")


def read_bytes(name: str, stdin=None) -> bytes:
    try:
        if name == "-":
            return (stdin or sys.stdin.buffer).read()
        return Path(name).read_bytes()
    except OSError as exc:
        raise unreadable(name, exc) from None


def open_binary(name: str, stdin=None):
    if name == "-":
        return nullcontext(stdin or sys.stdin.buffer)
    try:
        return open(name, "rb")
    except OSError as exc:
        raise unreadable(name, exc) from None


def byte_lines(name: str, stdin=None) -> Iterator[bytes]:
    """The file's lines as bytes, endings kept, read as they are needed."""
    with open_binary(name, stdin) as fh:
        try:
            yield from fh
        except IsADirectoryError:
            raise BadInputError(f"{name} is a folder, not a text file") from None
        except OSError as exc:
            raise BadInputError(f"cannot read {name}: {exc.strerror}") from None


def text_lines(name: str, stdin=None) -> Iterator[str]:
    """Decoded lines, endings kept; the first byte that is not UTF-8 or a NUL stops the read."""
    shown, offset = "stdin" if name == "-" else name, 0
    for raw in byte_lines(name, stdin):
        yield decode(raw, shown, offset)
        offset += len(raw)


def decode(data: bytes, name: str, offset: int = 0) -> str:
    """``data`` as text; ``offset``: where it starts in the file, for the error's byte number."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{name} is not UTF-8 text (byte {offset + exc.start})") from None
    if "\x00" in text:
        raise BadInputError(f"{name} looks binary, not text")
    return text


def read_lines(names: Sequence[str], stdin=None) -> list[str]:
    """The non-empty lines of text files ('-' for stdin), in order: one text per line."""
    out: list[str] = []
    for name in names:
        text = decode(read_bytes(name, stdin), "stdin" if name == "-" else name)
        out.extend(line for line in text.splitlines() if line.strip())
    return out

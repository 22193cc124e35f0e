"""Empty, truncated and nonsensical GGUF files: ``Embedder(...)`` raises a ``GGUFEmbedError`` with a
one-line message, and ``gguf-embed encode`` / ``plan`` print that one line (no traceback)."""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gguf_embed import Embedder, keys
from gguf_embed.cli import main
from gguf_embed.errors import GGUFEmbedError
from gguf_embed.model.gguf_file import read_gguf

REPO = Path(__file__).resolve().parent.parent
STRING, ARRAY = 8, 9


def gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def header(*kvs: tuple[str, int, bytes], version: int = 3, n_tensors: int = 0) -> bytes:
    """A GGUF header with these (key, value type, encoded value) entries."""
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + b"".join(
        gguf_string(k) + struct.pack("<I", t) + v for k, t, v in kvs)


def made_up() -> dict[str, bytes]:
    rng = random.Random(7)
    return {
        "empty": b"",
        "three bytes": b"GGU",
        "magic only": b"GGUF",
        "magic and garbage": b"GGUF" + bytes(rng.randrange(256) for _ in range(300)),
        "version 3 and garbage": b"GGUF\x03\x00\x00\x00" + bytes(rng.randrange(256) for _ in range(300)),
        "zeros": b"GGUF" + bytes(20),
        "version 1": header(version=1),
        "version 99": header(version=99),
        "no metadata": header(),
        "huge counts": b"GGUF" + struct.pack("<IQQ", 3, 2**63, 2**63),
        "huge key": b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**64 - 1),
        "unknown value type": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gguf_string("k") + struct.pack("<I", 99),
        "alignment array": header(("general.alignment", ARRAY, struct.pack("<IQ", STRING, 1) + gguf_string("x"))),
        "max_tokens a word": header((keys.ARCH, STRING, gguf_string("bert")),
                                    (keys.MAX_TOKENS, STRING, gguf_string("many"))),
        "tensor past the end": header((keys.ARCH, STRING, gguf_string("bert")), n_tensors=1)
        + gguf_string("t") + struct.pack("<IQQIQ", 2, 2**40, 2**40, 0, 0),
        "cut in the magic": b"GG",
    }


@pytest.fixture(scope="module")
def bad_files(minilm_gguf, tmp_path_factory) -> dict[str, Path]:
    """Made-up headers, and the real all-MiniLM GGUF cut at points through its header, its
    tensor table and its data."""
    folder = tmp_path_factory.mktemp("bad-gguf")
    real = Path(minilm_gguf("F16")).read_bytes()
    start = read_gguf(minilm_gguf("F16")).data_start
    files = made_up()
    for cut in (4, 8, 23, 24, 100, 5000, start // 2, start - 1, start, start + 1000, len(real) - 1):
        files[f"real cut at {cut}"] = real[:cut]
    files["real cut in its data"] = real[:len(real) // 2]
    files["real with version 0"] = real[:4] + struct.pack("<I", 0) + real[8:4096]
    out = {}
    for i, (name, data) in enumerate(files.items()):
        path = folder / f"bad-{i}.gguf"
        path.write_bytes(data)
        out[name] = path
    return out


def test_embedder_raises_one_line(bad_files):
    for name, path in bad_files.items():
        with pytest.raises(GGUFEmbedError) as e:
            Embedder(path, n_threads=1)
        msg = e.value.message
        assert "\n" not in msg and str(path) in msg, (name, msg)


def test_encode_and_plan_print_one_line(bad_files, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    runner = CliRunner()
    for name, path in bad_files.items():
        for args in (["encode", str(src), "-m", str(path), "-q"], ["encode", str(src), "-m", str(path), "--vram", "1GB"],
                     ["plan", str(path)]):
            res = runner.invoke(main, args)
            if args[0] == "plan" and res.exit_code == 0:
                continue  # a plan reads the header only: a file cut in its data still plans
            lines = res.output.strip().splitlines()
            assert res.exit_code == 1 and isinstance(res.exception, SystemExit), (name, args, res.output,
                                                                                  res.exception)
            assert len(lines) == 1 and lines[0].startswith("Error: ") and str(path) in lines[0], (name, res.output)


def test_messages_say_what_is_wrong(bad_files):
    def message(name: str) -> str:
        with pytest.raises(GGUFEmbedError) as e:
            Embedder(bad_files[name], n_threads=1)
        return e.value.message

    assert message("empty").endswith("is not a GGUF file")
    assert "is not a GGUF file llama.cpp can read (version " in message("magic and garbage")
    assert message("version 3 and garbage").endswith("is a truncated or corrupt GGUF file")
    assert message("real cut at 5000").endswith("is a truncated or corrupt GGUF file")
    assert message("version 99").endswith("is not a GGUF file llama.cpp can read (version 99; it reads 2, 3)")
    assert "data is not within the file bounds" in message("real cut in its data")
    assert "unknown model architecture" in message("no metadata")
    assert "metadata gguf-embed cannot read (ValueError" in message("max_tokens a word")


def test_the_process_prints_one_line_on_stderr(bad_files, tmp_path):
    """llama.cpp's own log (C-level stderr) stays quiet too: one line, whoever reads the terminal."""
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    path = bad_files["real cut in its data"]  # read_gguf passes it (header only); llama.cpp refuses it
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "gguf_embed", "encode", str(src), "-m", str(path), "-q"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot load {path}: error loading model: tensor "), lines
    assert lines[0].endswith("data is not within the file bounds, model is corrupted or incomplete"), lines

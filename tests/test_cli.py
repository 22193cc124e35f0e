"""The command line: exact output through click's CliRunner, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import Embedder
from gguf_embed.cli import main
from tools.texts import VARIED_TEXTS

from .helpers import cos


@pytest.fixture()
def runner():
    return CliRunner()


@pytest.mark.quick
def test_encode_jsonl_to_stdout(runner, tmp_path, minilm_gguf, minilm_embedder):
    src = tmp_path / "in.txt"
    src.write_text("first line\n\n   \nsecond line\n", encoding="utf-8")
    result = runner.invoke(main, ["encode", str(src), "-m", str(minilm_gguf("F16"))])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    assert set(rows[0]) == {"index", "id", "embedding", "tokens"}
    assert [r["id"] for r in rows] == ["1", "4"]  # a .txt record's id is its line number
    expect = minilm_embedder.embed(["first line", "second line"])
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), expect.embeddings, atol=1e-6)
    assert [r["tokens"] for r in rows] == expect.token_counts.tolist()
    assert result.stderr == ""  # short input: no progress bar, nothing but data on stdout


def test_encode_stdin_with_options(runner, tiny_qwen_gguf, qwen_embedder):
    text = "\n".join(VARIED_TEXTS[:5]) + "\n"
    args = ["encode", "-", "-m", str(tiny_qwen_gguf("F32")), "--input-type", "query", "--dimensions", "32"]
    result = runner.invoke(main, args, input=text)
    assert result.exit_code == 0, result.output
    got = np.array([json.loads(line)["embedding"] for line in result.stdout.splitlines()])
    expect = qwen_embedder.embed(VARIED_TEXTS[:5], input_type="query", dimensions=32).embeddings
    np.testing.assert_allclose(got, expect, atol=1e-6)
    raw = runner.invoke(main, ["encode", "-", "-m", str(tiny_qwen_gguf("F32")), "--no-normalize"], input="hello\n")
    vec = np.array(json.loads(raw.stdout)["embedding"])
    np.testing.assert_allclose(vec, qwen_embedder.embed(["hello"], normalize=False).embeddings[0], atol=1e-5)


def test_encode_10k_lines_to_npy_with_progress(runner, tmp_path, tiny_qwen_gguf):
    lines = [f"{VARIED_TEXTS[i % len(VARIED_TEXTS)].splitlines()[0]} #{i}" for i in range(10_000)]
    src = tmp_path / "big.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "big.npy"
    result = runner.invoke(main, ["encode", str(src), "-m", str(tiny_qwen_gguf("F32")), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "embedding" in result.stderr and "10000/10000" in result.stderr
    vecs = np.load(out)
    assert vecs.dtype == np.float32 and vecs.shape == (10_000, 64)
    with Embedder(tiny_qwen_gguf("F32")) as emb:
        pick = [0, 1, 4_999, 9_999]
        # batched among 10,000 vs a batch of 4: compared by cosine, not element-wise
        assert cos(vecs[pick], emb.embed([lines[i] for i in pick]).embeddings).min() >= 0.99999
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "case, expect",
    [
        ("missing", "does not exist"),
        ("empty", "no text to embed"),
        ("not_gguf", "is not a GGUF file"),
        ("bad_dims", "dimensions must be between 16 and 64"),
        ("binary", "is not UTF-8 text"),
        ("too_long", "more than the model's limit of 512"),
        ("unknown_model", "unknown model 'no-such-model'"),
        ("folder", "is a folder with no .txt or .md files"),
    ],
)
def test_encode_errors_are_one_line(runner, tmp_path, tiny_qwen_gguf, case, expect):
    good = tmp_path / "in.txt"
    good.write_text("hello\n", encoding="utf-8")
    model = str(tiny_qwen_gguf("F32"))
    out = tmp_path / "out.npy"
    args = {
        "missing": [str(tmp_path / "nope.txt"), "-m", model],
        "empty": [str(tmp_path / "empty.txt"), "-m", model],
        "not_gguf": [str(good), "-m", str(good)],
        "bad_dims": [str(good), "-m", model, "--dimensions", "8"],
        "binary": [str(tmp_path / "bin.txt"), "-m", model],
        "too_long": [str(tmp_path / "long.txt"), "-m", model],
        "unknown_model": [str(good), "-m", "no-such-model"],
        "folder": [str(tmp_path / "no-texts"), "-m", model],
    }[case]
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc")
    (tmp_path / "long.txt").write_text("word " * 2000)
    (tmp_path / "no-texts").mkdir()
    result = runner.invoke(main, ["encode", *args, "-o", str(out)])
    assert result.exit_code != 0
    assert expect in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_interrupted_encode_leaves_no_file(runner, tmp_path, tiny_qwen_gguf, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("a\nb\n")
    out = tmp_path / "out.jsonl"
    out_before = out.exists()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", boom)
    monkeypatch.setattr(json, "dumps", boom)
    result = runner.invoke(main, ["encode", str(src), "-m", str(tiny_qwen_gguf("F32")), "-o", str(out)])
    assert result.exit_code != 0
    assert out.exists() is out_before is False
    assert list(tmp_path.iterdir()) == [src]


@pytest.mark.quick
def test_models_lists_registry(runner):
    result = runner.invoke(main, ["models"])
    assert result.exit_code == 0
    for name in ("qwen3-embedding-0.6b", "qwen3-embedding-4b", "qwen3-embedding-8b", "all-minilm-l6-v2",
                 "bge-small-en-v1.5", "bge-base-en-v1.5", "multilingual-e5-small"):
        assert name in result.stdout


def test_registry_name_resolves_in_models_dir(runner, tmp_path, minilm_gguf):
    import shutil

    shutil.copy(minilm_gguf("F16"), tmp_path / "all-minilm-l6-v2-F16.gguf")
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    ok = runner.invoke(main, ["encode", str(src), "-m", "all-minilm-l6-v2", "--models-dir", str(tmp_path)])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["index"] == 0
    missing = runner.invoke(main, ["encode", str(src), "-m", "bge-small-en-v1.5", "--models-dir", str(tmp_path)])
    assert missing.exit_code != 0 and "not converted yet" in missing.output
    assert "gguf-embed convert bge-small-en-v1.5" in missing.output

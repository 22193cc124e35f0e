"""Hostile corpora through `gguf-embed encode`: each gives one line naming the file and the line
or row and leaves nothing half-written, or (with --skip-bad) the record is set aside and the rest
embedded; never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .test_corpus import encode, manifest_of


@pytest.fixture(scope="module")
def qwen(tiny_qwen_gguf):
    return str(tiny_qwen_gguf("F32"))


def one_line(res) -> str:
    assert res.exit_code != 0, res.output
    out = res.output.strip()
    assert "Traceback" not in out and len(out.splitlines()) == 1, out
    return out


def nothing_written(out: Path) -> None:
    assert not out.exists() and not out.with_name(out.name + ".manifest.json").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(out.name)], list(out.parent.iterdir())


def test_a_50_mb_single_line_is_one_line_or_truncated(tmp_path, qwen):
    src = tmp_path / "big.jsonl"
    with src.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a", "text": "fine"}) + "\n")
        f.write('{"id": "huge", "text": "' + "word " * 10_000_000 + '"}\n')
        f.write(json.dumps({"id": "c", "text": "also fine"}) + "\n")
    assert src.stat().st_size > 50_000_000
    out = tmp_path / "out.jsonl"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert f"{src} line 2:" in line and "more than the model's limit" in line, line
    nothing_written(out)
    res = encode(src, "-m", qwen, "-o", out, "--no-cache", "--truncate", "end")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "huge", "c"]
    res = encode(src, "-m", qwen, "-o", tmp_path / "skip.jsonl", "--no-cache", "--skip-bad")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["id"] for x in (tmp_path / "skip.jsonl").read_text().splitlines()] == ["a", "c"]


def test_a_50_mb_line_of_a_text_file(tmp_path, qwen):
    src = tmp_path / "big.txt"
    src.write_text("first line\n" + "x" * 50_000_000 + "\nlast line\n")
    out = tmp_path / "out.jsonl"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert f"{src} line 2:" in line, line
    nothing_written(out)


def test_csv_fields_with_quoted_newlines(tmp_path, qwen):
    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,"first line\nsecond line"\n2,plain\n3,"a ""quoted"" word,\nand a comma"\n')
    out = tmp_path / "out.jsonl"
    res = encode(src, "-m", qwen, "-o", out, "--no-cache", "--keep-text")
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert [r["text"] for r in rows] == ["first line\nsecond line", "plain", 'a "quoted" word,\nand a comma']


def test_csv_errors_name_the_line_a_record_starts_on(tmp_path, qwen):
    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,"two\nlines"\n2,"  \n  "\n3,fine\n')
    line = one_line(encode(src, "-m", qwen, "-o", tmp_path / "o.jsonl", "--no-cache"))
    assert f"{src} line 4: empty text" in line, line


def test_csv_with_an_unclosed_quote(tmp_path, qwen):
    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,ok\n2,"never closed\n3,more\n')
    out = tmp_path / "o.jsonl"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert str(src) in line and "line 3" in line, line
    nothing_written(out)


@pytest.mark.parametrize("column, expect", [
    (pa.array([1.5, 2.5]), "column 'text' is double, not text"),
    (pa.array([[1], [2]]), "column 'text' is list<"),
    (pa.array([{"a": "x"}, {"a": "y"}]), "column 'text' is struct<a: string>, not text"),
    (pa.array([b"ok", b"\xff bad"], pa.binary()), "column 'text' is binary, not text"),
    (pa.array(["ok", None]), "row 1: field 'text' is null"),  # rows count from 0, as Arrow's do
])
def test_parquet_nulls_and_non_string_columns(tmp_path, qwen, column, expect):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": column}), src)
    out = tmp_path / "o.parquet"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert expect in line and str(src) in line, line
    nothing_written(out)


def test_parquet_null_and_integer_ids(tmp_path, qwen):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": pa.array([7, None, 9, 10]), "text": ["a", "b", None, "d"]}), src)
    out = tmp_path / "o.jsonl"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert f"{src} row 1: 'id' is null" in line, line
    res = encode(src, "-m", qwen, "-o", out, "--no-cache", "--skip-bad")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["7", "10"]  # ids are strings in every output
    bad = [json.loads(x) for x in out.with_name(out.name + ".errors.jsonl").read_text().splitlines()]
    assert [b["where"].rsplit(" ", 1)[-1] for b in bad] == ["1", "2"]


def test_nul_bytes(tmp_path, qwen):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "nul\\u0000inside"}\n', encoding="utf-8")
    out = tmp_path / "o.jsonl"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert f"{src} line 2:" in line and "NUL" in line, line
    nothing_written(out)
    raw = tmp_path / "raw.txt"
    raw.write_bytes(b"one\ntwo\x00three\n")
    line = one_line(encode(raw, "-m", qwen, "-o", out, "--no-cache"))
    assert str(raw) in line and "binary" in line, line


def test_a_folder_with_unreadable_and_odd_files(tmp_path, qwen):
    src = tmp_path / "docs"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.md").write_text("beta")
    (src / "broken.txt").symlink_to(tmp_path / "missing.txt")
    os.mkfifo(src / "pipe.txt")  # opening it would block forever
    (src / "dir.txt").mkdir()
    (src / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    out = tmp_path / "o.jsonl"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert "bad.txt: not UTF-8 text" in line, line
    nothing_written(out)
    res = encode(src, "-m", qwen, "-o", out, "--no-cache", "--skip-bad")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a.txt", "sub/b.md"]
    assert manifest_of(out)["count"] == 2


# --- what a run remembers stays bounded -------------------------------------------------------


def test_duplicate_ids_are_found_after_the_id_index_moves_to_disk(tmp_path, qwen, monkeypatch):
    from gguf_embed.corpus import seen

    monkeypatch.setattr(seen, "MEMORY_IDS", 50)
    rows = [{"id": f"d{i}", "text": f"text {i}"} for i in range(300)] + [{"id": "d7", "text": "again"}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o.jsonl"
    line = one_line(encode(src, "-m", qwen, "-o", out, "--no-cache"))
    assert f"{src} line 301: duplicate id 'd7' (first at {src} line 8)" in line, line


def test_bad_records_past_the_memory_limit_reach_the_errors_file_in_order(tmp_path, qwen, monkeypatch):
    from gguf_embed.corpus import seen

    monkeypatch.setattr(seen, "MEMORY_BAD", 5)
    lines = []
    for i in range(40):
        lines.append(json.dumps({"id": f"ok{i}", "text": f"fine {i}"}))
        lines.append(json.dumps({"id": f"bad{i}", "text": "  "}))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o.jsonl"
    res = encode(src, "-m", qwen, "-o", out, "--no-cache", "--skip-bad")
    assert res.exit_code == 0, res.output
    errors = [json.loads(x) for x in out.with_name(out.name + ".errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == [f"bad{i}" for i in range(40)]
    assert all(e["error"] == "empty text" for e in errors)
    assert manifest_of(out)["skipped"] == 40 and manifest_of(out)["count"] == 40


def test_seen_ids_and_bad_log_clean_up():
    from gguf_embed.corpus.records import BadRecord
    from gguf_embed.corpus.seen import BadLog, SeenIds

    ids = SeenIds(limit=3)
    for i in range(10):
        ids[f"k{i}"] = f"line {i}"
    assert ids.path and os.path.exists(ids.path) and len(ids.recent) == 1
    assert [ids.get(f"k{i}") for i in range(10)] == [f"line {i}" for i in range(10)] and "k99" not in ids
    path = ids.path
    ids.close()
    assert not os.path.exists(path)
    log = BadLog(limit=2)
    log.extend(BadRecord(f"w{i}", f"i{i}", "e") for i in range(5))
    assert len(log) == 5 and [b.where for b in log] == [f"w{i}" for i in range(5)]
    path = log.path
    log.close()
    assert not os.path.exists(path)

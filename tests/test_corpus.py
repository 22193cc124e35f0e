"""Corpus jobs: readers, outputs and manifest, cache reuse, resume after a kill, chunking, errors."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gguf_embed.cli import main
from gguf_embed.corpus import VectorCache, chunk_spans, text_key
from tools.texts import VARIED_TEXTS

from .helpers import cos

REPO = Path(__file__).resolve().parent.parent
MANIFEST_KEYS = {"model", "model_sha256", "file_type", "pooling", "dimensions", "normalized", "input_type",
                 "instruction", "prompt", "truncate", "count", "embedded", "reused", "gguf_embed_version",
                 "llama_cpp_version", "started", "finished", "family", "text_field", "id_field", "input_format"}


def docs(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"doc-{i}", "text": f"{VARIED_TEXTS[i % len(VARIED_TEXTS)].splitlines()[0]} (number {i})"}
            for i in range(start, start + n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def encode(*args, cache: Path | None = None) -> tuple:
    threads = [] if "--threads" in args else ["--threads", "1"]  # steady on a busy 2-core machine
    argv = ["encode", *map(str, args), "-q", *threads] + (["--cache", str(cache)] if cache else [])
    result = CliRunner().invoke(main, argv)
    return result


def manifest_of(out: Path) -> dict:
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())


cos_rows = cos


@pytest.fixture(scope="module")
def qwen(tiny_qwen_gguf):
    return str(tiny_qwen_gguf("F32"))


# --- inputs and outputs -----------------------------------------------------------------


def test_jsonl_to_parquet_with_manifest(tmp_path, qwen, qwen_embedder):
    rows = docs(40) + [{"id": "dup", "text": docs(1)[0]["text"]}]  # the same text twice: embedded once
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "vectors.parquet"
    res = encode(src, "-m", qwen, "-o", out, "--input-type", "query", "--dimensions", "32", cache=tmp_path / "c.db")
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    expect = qwen_embedder.embed([r["text"] for r in rows], input_type="query", dimensions=32).embeddings
    assert cos_rows(got, expect).min() > 0.99999
    m = manifest_of(out)
    assert MANIFEST_KEYS <= set(m)
    assert m["model_sha256"] == hashlib.sha256(Path(qwen).read_bytes()).hexdigest()
    assert (m["count"], m["embedded"], m["reused"], m["duplicates"]) == (41, 40, 0, 1)
    assert m["file_type"] == "ALL_F32" or m["file_type"] == "F32"
    assert m["prompt"] == qwen_embedder.prompt_for("query", None) and m["prompt"].startswith("Instruct: ")
    assert (m["pooling"], m["dimensions"], m["normalized"], m["input_type"]) == ("last", 32, True, "query")
    assert m["started"] <= m["finished"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.db", "c.db-shm", "c.db-wal", "in.jsonl",
                                                          "vectors.parquet", "vectors.parquet.manifest.json"] or \
        {"in.jsonl", "vectors.parquet", "vectors.parquet.manifest.json"} <= {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_every_reader_gives_the_same_rows(tmp_path, qwen):
    rows = docs(6)
    write_jsonl(tmp_path / "a.jsonl", rows)
    with open(tmp_path / "a.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["id", "text"])
        w.writeheader()
        w.writerows(rows)
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}), tmp_path / "a.parquet")
    folder = tmp_path / "docs"
    for r in rows:
        (folder / "sub").mkdir(parents=True, exist_ok=True)
        (folder / "sub" / f"{r['id']}.md").write_text(r["text"], encoding="utf-8")
    (tmp_path / "a.txt").write_text("\n\n".join(r["text"] for r in rows) + "\n", encoding="utf-8")
    outs = {}
    for name in ("a.jsonl", "a.csv", "a.parquet", "docs", "a.txt"):
        out = tmp_path / f"{name}.out.jsonl"
        res = encode(tmp_path / name, "-m", qwen, "-o", out, "--no-cache")
        assert res.exit_code == 0, (name, res.output)
        outs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in outs["a.csv"]] == [r["id"] for r in rows] == [r["id"] for r in outs["a.parquet"]]
    assert [r["id"] for r in outs["docs"]] == [f"sub/{r['id']}.md" for r in rows]
    assert [r["id"] for r in outs["a.txt"]] == ["1", "3", "5", "7", "9", "11"]  # line numbers
    base = np.array([r["embedding"] for r in outs["a.jsonl"]])
    for name, got in outs.items():
        assert [r["index"] for r in got] == list(range(6))
        np.testing.assert_allclose(np.array([r["embedding"] for r in got]), base, atol=1e-6, err_msg=name)


def test_npy_output_and_stdout(tmp_path, qwen):
    src = write_jsonl(tmp_path / "in.jsonl", docs(5))
    out = tmp_path / "v.npy"
    assert encode(src, "-m", qwen, "-o", out).exit_code == 0
    assert np.load(out).shape == (5, 64) and manifest_of(out)["count"] == 5
    res = CliRunner().invoke(main, ["encode", str(src), "-m", qwen])
    assert [json.loads(line)["id"] for line in res.stdout.splitlines()] == [f"doc-{i}" for i in range(5)]


# --- errors ----------------------------------------------------------------------------------


BAD_INPUTS = {
    "malformed": ('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', "in.jsonl line 2: malformed JSON"),
    "missing_field": ('{"id": "a", "text": "ok"}\n{"id": "b", "body": "x"}\n', "in.jsonl line 2: missing field 'text'"),
    "not_string": ('{"id": "a", "text": 5}\n', "in.jsonl line 1: field 'text' is int, not a string"),
    "null_text": ('{"id": "a", "text": null}\n', "in.jsonl line 1: field 'text' is null, not a string"),
    "duplicate": ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "in.jsonl line 2: duplicate id 'a'"),
    "empty": ('{"id": "a", "text": "x"}\n{"id": "b", "text": "  "}\n', "in.jsonl line 2: empty text"),
    "not_object": ('[1, 2]\n', "in.jsonl line 1: not a JSON object"),
    "bad_id": ('{"id": [1], "text": "x"}\n', "in.jsonl line 1: id must be a string or an integer"),
    "too_long": ('{"id": "a", "text": "x"}\n{"id": "b", "text": "' + "word " * 2000 + '"}\n',
                 "in.jsonl line 2: * tokens, more than the model's limit of 512"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_jsonl_is_one_line_naming_file_and_line(tmp_path, qwen, case):
    content, expect = BAD_INPUTS[case]
    src = tmp_path / "in.jsonl"
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "out.parquet"
    res = encode(src, "-m", qwen, "-o", out, cache=tmp_path / "c.db")
    assert res.exit_code != 0
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, res.output
    head, _, tail = expect.partition("*")
    assert head in line and tail in line and str(src) in line, line
    assert not out.exists() and not out.with_name("out.parquet.manifest.json").exists()


@pytest.mark.parametrize("case, expect", [
    ("csv_column", "no column 'text' (columns: id, body)"),
    ("parquet_column", "no column 'text' (columns: id, body)"),
    ("parquet_type", "column 'text' is int64, not text"),
    ("parquet_null", "row 1: field 'text' is null"),
    ("csv_empty", "line 3: empty text"),
    ("not_parquet", "is not a Parquet file"),
    ("empty_folder", "is a folder with no .txt or .md files"),
    ("folder_binary", "b.txt: not UTF-8 text"),
    ("chunk_too_big", "--chunk-tokens 600 is more than the model's limit of 512"),
])
def test_bad_inputs_of_other_formats(tmp_path, qwen, case, expect):
    src = tmp_path / "in"
    extra = []
    if case == "csv_column":
        src = tmp_path / "in.csv"
        src.write_text("id,body\n1,hello\n")
    elif case == "csv_empty":
        src = tmp_path / "in.csv"
        src.write_text("id,text\n1,hello\n2,\n")
    elif case.startswith("parquet"):
        src = tmp_path / "in.parquet"
        cols = {"parquet_column": {"id": ["1"], "body": ["x"]}, "parquet_type": {"id": ["1"], "text": [3]},
                "parquet_null": {"id": ["1", "2"], "text": ["x", None]}}[case]
        pq.write_table(pa.table(cols), src)
    elif case == "not_parquet":
        src = tmp_path / "in.parquet"
        src.write_text("not parquet at all")
    elif case == "empty_folder":
        src.mkdir()
        (src / "x.pdf").write_bytes(b"%PDF")
    elif case == "folder_binary":
        src.mkdir()
        (src / "a.txt").write_text("fine")
        (src / "b.txt").write_bytes(b"\xff\xfe\x00")
    elif case == "chunk_too_big":
        src = write_jsonl(tmp_path / "in.jsonl", docs(2))
        extra = ["--chunk-tokens", "600"]
    out = tmp_path / "out.jsonl"
    res = encode(src, "-m", qwen, "-o", out, *extra)
    assert res.exit_code != 0
    assert len(res.output.strip().splitlines()) == 1 and expect in res.output, res.output
    assert not out.exists()


def test_skip_bad_sets_records_aside(tmp_path, qwen):
    content = ('{"id": "a", "text": "one"}\n{"id": "b", "text": \n{"id": "c"}\n{"id": "a", "text": "two"}\n'
               '{"id": "d", "text": "' + "word " * 2000 + '"}\n{"id": "e", "text": "three"}\n')
    src = tmp_path / "in.jsonl"
    src.write_text(content)
    out = tmp_path / "out.jsonl"
    res = encode(src, "-m", qwen, "-o", out, "--skip-bad", cache=tmp_path / "c.db")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "e"]
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["where"].rsplit(" ", 1)[1] for e in errors] == ["2", "3", "4", "5"]
    assert "malformed JSON" in errors[0]["error"] and "duplicate id 'a'" in errors[2]["error"]
    assert errors[3]["id"] == "d" and "more than the model's limit" in errors[3]["error"]
    m = manifest_of(out)
    assert (m["count"], m["skipped"]) == (2, 4)


# --- cache and resume ------------------------------------------------------------------------


def test_1000_then_1100_embeds_only_the_new_100(tmp_path, qwen):
    cache = tmp_path / "cache.sqlite"
    first = write_jsonl(tmp_path / "first.jsonl", docs(1000))
    second = write_jsonl(tmp_path / "second.jsonl", docs(1000) + docs(100, start=1000))
    out1, out2 = tmp_path / "1.parquet", tmp_path / "2.parquet"
    assert encode(first, "-m", qwen, "-o", out1, cache=cache).exit_code == 0
    m1 = manifest_of(out1)
    assert (m1["count"], m1["embedded"], m1["reused"]) == (1000, 1000, 0)
    res = encode(second, "-m", qwen, "-o", out2, cache=cache)
    assert res.exit_code == 0, res.output
    m2 = manifest_of(out2)
    assert (m2["count"], m2["embedded"], m2["reused"]) == (1100, 100, 1000)
    v1 = np.array(pq.read_table(out1).column("embedding").to_pylist(), dtype=np.float32)
    v2 = np.array(pq.read_table(out2).column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(v2[:1000], v1)  # old vectors unchanged, bit for bit
    # other settings are another cache space: nothing reused
    out3 = tmp_path / "3.parquet"
    assert encode(first, "-m", qwen, "-o", out3, "--dimensions", "16", cache=cache).exit_code == 0
    assert manifest_of(out3)["reused"] == 0
    # --restart embeds everything again
    assert encode(first, "-m", qwen, "-o", out3, "--restart", cache=cache).exit_code == 0
    assert (manifest_of(out3)["embedded"], manifest_of(out3)["reused"]) == (1000, 0)


def test_no_cache_resumes_from_progress_next_to_output(tmp_path, qwen, monkeypatch):
    from gguf_embed.engine.session import Session

    src = write_jsonl(tmp_path / "in.jsonl", docs(300))
    out = tmp_path / "out.npy"
    real = Session.rows
    done = {"n": 0}

    def flaky(self, seqs, progress=None, alone=None):  # interrupted once two windows of 100 are committed
        if done["n"] >= 200:
            raise KeyboardInterrupt
        done["n"] += len(seqs)
        return real(self, seqs, progress, alone)

    monkeypatch.setattr(Session, "rows", flaky)
    res = encode(src, "-m", qwen, "-o", out, "--no-cache", "--commit-every", "100")
    assert res.exit_code != 0 and not out.exists()
    assert (tmp_path / ".out.npy.progress.sqlite").exists()
    monkeypatch.setattr(Session, "rows", real)
    res = encode(src, "-m", qwen, "-o", out, "--no-cache", "--commit-every", "100")
    assert res.exit_code == 0, res.output
    m = manifest_of(out)
    assert (m["embedded"], m["reused"], m["cache"]) == (100, 200, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.npy", "out.npy.manifest.json"]


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, minilm_gguf):
    model = str(minilm_gguf("F16"))
    rows = [{"id": f"d{i}", "text": f"{VARIED_TEXTS[i % len(VARIED_TEXTS)].splitlines()[0][:100]} {i}"}
            for i in range(600)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cache, out = tmp_path / "cache.sqlite", tmp_path / "out.parquet"
    cmd = [sys.executable, "-m", "gguf_embed.cli", "encode", str(src), "-m", model, "-o", str(out), "-q",
           "--cache", str(cache), "--commit-every", "16", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists():
            try:
                with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5) as db:
                    done = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 64:
                break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < done < len(rows) and not out.exists()
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    m = manifest_of(out)
    assert m["reused"] >= done and m["embedded"] < len(rows) and m["embedded"] + m["reused"] == len(rows)
    clean = tmp_path / "clean.parquet"
    assert encode(src, "-m", model, "-o", clean, "--no-cache", "--threads", "1").exit_code == 0
    a, b = pq.read_table(out), pq.read_table(clean)
    assert a.column("id").to_pylist() == b.column("id").to_pylist() == [r["id"] for r in rows]
    va = np.array(a.column("embedding").to_pylist(), dtype=np.float32)
    vb = np.array(b.column("embedding").to_pylist(), dtype=np.float32)
    assert cos_rows(va, vb).min() >= 0.99999


WRITER = """
import sys, numpy as np
from gguf_embed.corpus import VectorCache, space_params, text_key
path, who = sys.argv[1], int(sys.argv[2])
params = space_params("f" * 64, prompt="", input_type=None, instruction=None, pooling="mean", dimensions=8,
                      normalize=True, truncate="error", max_tokens=512)
with VectorCache(path) as c:
    space = c.space("m", params)
    for step in range(40):
        ids = range(step * 10, step * 10 + 30)  # overlaps the other writer and its own previous step
        c.put_many(space, [text_key(f"t{i}") for i in ids], np.array([[i] * 8 for i in ids], np.float32), ids)
        assert len(c.get_many(space, [text_key(f"t{i}") for i in ids])) == 30
"""


def test_two_processes_write_one_cache(tmp_path):
    path = tmp_path / "shared.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(w)], env=env, stderr=subprocess.PIPE)
             for w in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    with VectorCache(path) as c:
        from gguf_embed.corpus import space_params

        params = space_params("f" * 64, prompt="", input_type=None, instruction=None, pooling="mean", dimensions=8,
                              normalize=True, truncate="error", max_tokens=512)
        space = c.space("m", params)
        got = c.get_many(space, [text_key(f"t{i}") for i in range(420)])
        assert len(got) == 420 and len(c.stats()["spaces"]) == 1
        assert all(np.all(got[text_key(f"t{i}")][0] == i) and got[text_key(f"t{i}")][1] == i for i in range(420))
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_cache_stats_and_prune(tmp_path, qwen):
    cache = tmp_path / "c.sqlite"
    src = write_jsonl(tmp_path / "in.jsonl", docs(20))
    assert encode(src, "-m", qwen, "-o", tmp_path / "o.npy", cache=cache).exit_code == 0
    runner = CliRunner()
    stats = json.loads(runner.invoke(main, ["cache", "stats", "--cache", str(cache), "--json"]).stdout)
    assert stats["vectors"] == 20 and stats["spaces"][0]["dims"] == 64
    assert stats["spaces"][0]["model_sha256"] == hashlib.sha256(Path(qwen).read_bytes()).hexdigest()
    text = runner.invoke(main, ["cache", "stats", "--cache", str(cache)]).stdout
    assert "20 vectors" in text
    assert runner.invoke(main, ["cache", "prune", "--cache", str(cache), "--older-than", "1"]).stdout.startswith(
        "deleted 0 vectors")
    none = runner.invoke(main, ["cache", "prune", "--cache", str(cache)])
    assert none.exit_code != 0 and "say what to prune" in none.output
    res = runner.invoke(main, ["cache", "prune", "--cache", str(cache), "--model-sha256", stats["spaces"][0]["model_sha256"][:10]])
    assert res.stdout.startswith("deleted 20 vectors")
    assert json.loads(runner.invoke(main, ["cache", "stats", "--cache", str(cache), "--json"]).stdout)["vectors"] == 0
    missing = runner.invoke(main, ["cache", "stats", "--cache", str(tmp_path / "nope.sqlite")])
    assert missing.exit_code != 0 and "no cache at" in missing.output


def test_model_hash_is_read_once_per_file_version(tmp_path, monkeypatch):
    from gguf_embed.store import cache as cache_mod

    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + b"x" * 1000)
    reads = []
    real = cache_mod.sha256_file
    monkeypatch.setattr(cache_mod, "sha256_file", lambda p: reads.append(p) or real(p))
    with VectorCache(tmp_path / "c.sqlite") as c:
        h1, h2 = c.file_sha256(f), c.file_sha256(f)
        assert h1 == h2 == hashlib.sha256(f.read_bytes()).hexdigest() and len(reads) == 1
        f.write_bytes(b"GGUF" + b"y" * 1001)
        assert c.file_sha256(f) == hashlib.sha256(f.read_bytes()).hexdigest() and len(reads) == 2


# --- chunking -------------------------------------------------------------------------------


@pytest.mark.quick
def test_chunk_spans_snap_to_whitespace_with_overlap():
    text = " ".join(f"w{i}" for i in range(50)) + " " + "x" * 100 + " tail"
    count = lambda s: 2 + len(s.split()) + sum(len(w) // 8 for w in s.split())  # noqa: E731
    spans = chunk_spans(text, count, 10, overlap=3)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for a, b in spans:
        assert count(text[a:b]) <= 10 and b > a
        assert a == 0 or text[a - 1] == " " or text[a - 1] == "x"  # a word start, or inside the one huge word
    starts = [a for a, _ in spans]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert spans[1][0] < spans[0][1]  # neighbours overlap
    assert chunk_spans("short text", count, 10) == [(0, 10)]


def test_chunked_parquet_rows_carry_doc_chunk_and_span(tmp_path, qwen, qwen_embedder):
    long_text = " ".join(VARIED_TEXTS[:8]).replace("\n", " ")
    rows = [{"id": "long", "text": long_text}, {"id": "short", "text": "a short one"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "c.parquet"
    res = encode(src, "-m", qwen, "-o", out, "--chunk-tokens", "48", "--chunk-overlap", "8", cache=tmp_path / "c.db")
    assert res.exit_code == 0, res.output
    t = pq.read_table(out).to_pydict()
    n_long = t["id"].count("long")
    assert n_long > 2 and t["id"] == ["long"] * n_long + ["short"]
    assert t["chunk"] == list(range(n_long)) + [0]
    assert (t["start"][-1], t["end"][-1]) == (0, len("a short one"))
    pieces = [long_text[a:b] for a, b in zip(t["start"][:n_long], t["end"][:n_long])]
    for (a, b), piece in zip(zip(t["start"], t["end"]), pieces):
        assert len(qwen_embedder.tokenize([piece])[0]) <= 48
        assert a == 0 or long_text[a - 1].isspace()
        assert b == len(long_text) or long_text[b].isspace()
    assert t["end"][n_long - 1] == len(long_text) and t["start"][1] < t["end"][0]
    expect = qwen_embedder.embed(pieces).embeddings
    assert cos_rows(np.array(t["embedding"][:n_long], dtype=np.float32), expect).min() > 0.99999
    assert manifest_of(out)["chunk_tokens"] == 48


def test_chunk_options_are_checked(tmp_path, qwen):
    src = write_jsonl(tmp_path / "in.jsonl", docs(2))
    for extra, expect in [(["--chunk-overlap", "4"], "--chunk-overlap needs --chunk-tokens"),
                          (["--chunk-tokens", "8", "--chunk-overlap", "8"], "smaller than --chunk-tokens"),
                          (["--chunk-tokens", "8", "-o", str(tmp_path / "x.npy")], "npy output has no room")]:
        res = encode(src, "-m", qwen, *extra)
        assert res.exit_code != 0 and expect in res.output, res.output


# --- serve --cache ---------------------------------------------------------------------------


def test_serve_uses_the_same_cache_keys_as_encode(tmp_path, qwen, qwen_embedder):
    from fastapi.testclient import TestClient

    from gguf_embed.corpus import space_params
    from gguf_embed.server import create_app

    cache = tmp_path / "c.sqlite"
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "alpha beta"}, {"id": "2", "text": "gamma"}])
    assert encode(src, "-m", qwen, "-o", tmp_path / "o.npy", "--dimensions", "32", cache=cache).exit_code == 0
    with VectorCache(cache) as c:  # plant a marker where encode stored "gamma": the server must return it
        params = space_params(c.file_sha256(qwen), prompt="", input_type=None, instruction=None, pooling="last",
                              dimensions=32, normalize=True, truncate="error", max_tokens=qwen_embedder.max_tokens)
        space = c.space("x", params)
        assert len(c.get_many(space, [text_key("gamma")])) == 1
        marker = np.full((1, 32), 1 / np.sqrt(32), np.float32)
        c.put_many(space, [text_key("gamma")], marker, [3])
    app = create_app([qwen_embedder], cache=cache)
    with TestClient(app) as client:
        while client.get("/health").status_code != 200:
            time.sleep(0.01)
        body = {"input": ["gamma", "delta", "alpha beta"], "dimensions": 32}
        r = client.post("/v1/embeddings", json=body).json()
        vecs = np.array([d["embedding"] for d in r["data"]], dtype=np.float32)
        np.testing.assert_allclose(vecs[0], marker[0], atol=1e-7)
        fresh = qwen_embedder.embed(["delta", "alpha beta"], dimensions=32).embeddings
        assert cos_rows(vecs[1:], fresh).min() > 0.99999
        assert r["usage"]["prompt_tokens"] == sum(len(s) for s in qwen_embedder.tokenize(body["input"]))
        again = np.array([d["embedding"] for d in client.post("/v1/embeddings", json=body).json()["data"]])
        np.testing.assert_array_equal(again, vecs)
    with VectorCache(cache) as c:
        assert c.stats()["vectors"] == 3


def test_public_api_names_resolve():
    import gguf_embed.corpus as corpus
    import gguf_embed.ray as gray

    assert all(hasattr(corpus, n) for n in corpus.__all__)
    assert set(gray.__all__) == {"EmbedBatch", "embed_dataset", "fetch_model", "ray_encoder"}


OLD_SCHEMA = """
CREATE TABLE spaces (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
    model_sha256 TEXT NOT NULL, params TEXT NOT NULL, dims INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE vectors (space INTEGER NOT NULL, hash BLOB NOT NULL, tokens INTEGER NOT NULL, vector BLOB NOT NULL,
    used INTEGER NOT NULL, PRIMARY KEY (space, hash)) WITHOUT ROWID;
CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
"""


def _space_of(c: VectorCache, dims: int):
    from gguf_embed.corpus import space_params

    return c.space("m", space_params("e" * 64, prompt="", input_type=None, instruction=None, pooling="mean",
                                     dimensions=dims, normalize=True, truncate="error", max_tokens=512))


def test_cache_file_is_close_to_the_raw_vector_bytes(tmp_path):
    """A few thousand MiniLM-sized (384 float32) vectors, committed in job-sized batches, read back."""
    path, n, dims = tmp_path / "c.sqlite", 3000, 384
    rng = np.random.default_rng(0)
    with VectorCache(path) as c:
        space = _space_of(c, dims)
        for a in range(0, n, 100):
            keys = [text_key(f"text {i}") for i in range(a, a + 100)]
            c.put_many(space, keys, rng.standard_normal((100, dims)), range(100))
        assert len(c.get_many(space, [text_key(f"text {i}") for i in range(n)])) == n
    stats = json.loads(CliRunner().invoke(main, ["cache", "stats", "--cache", str(path), "--json"]).stdout)
    assert stats["vectors"] == n and stats["spaces"][0]["vector_bytes"] == n * dims * 4
    assert stats["bytes"] <= 1.3 * n * dims * 4, stats["bytes"] / (n * dims * 4)


def test_old_schema_cache_is_migrated(tmp_path):
    path = tmp_path / "old.sqlite"
    with VectorCache(tmp_path / "ref.sqlite") as ref:  # the space row as the old code wrote it
        space_row = ref._db.execute("SELECT * FROM spaces WHERE id=?", (_space_of(ref, 4).id,)).fetchone()
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO spaces VALUES (?,?,?,?,?,?,?)", space_row)
    db.executemany("INSERT INTO vectors VALUES (?,?,?,?,?)",
                   [(space_row[0], text_key(f"t{i}"), i, np.full(4, i, np.float32).tobytes(), 1) for i in range(50)])
    db.commit()
    db.close()
    with VectorCache(path) as c:
        got = c.get_many(_space_of(c, 4), [text_key(f"t{i}") for i in range(50)])
        assert all(np.all(got[text_key(f"t{i}")][0] == i) and got[text_key(f"t{i}")][1] == i for i in range(50))
        assert c.stats()["vectors"] == 50
    db = sqlite3.connect(path)
    assert db.execute("SELECT type FROM sqlite_master WHERE name='vectors'").fetchone()[0] == "view"
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _dup_docs(n: int, distinct: int) -> list[dict]:
    return [{"id": f"r{i}", "text": docs(1, i % distinct)[0]["text"]} for i in range(n)]


def test_streamed_windows_equal_the_in_memory_result(tmp_path, qwen, qwen_embedder):
    """Small windows, texts repeated across windows: rows in input order, each text embedded once."""
    from gguf_embed.corpus import JobSpec, read_corpus, run_job

    rows = _dup_docs(300, 70)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    expect = qwen_embedder.embed([r["text"] for r in rows]).embeddings
    cache, out = tmp_path / "c.db", tmp_path / "v.parquet"
    res = encode(src, "-m", qwen, "-o", out, "--commit-every", "32", cache=cache)
    assert res.exit_code == 0, res.output
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    assert cos_rows(np.array(table.column("embedding").to_pylist(), np.float32), expect).min() > 0.99999
    m = manifest_of(out)
    assert (m["documents"], m["count"], m["embedded"], m["reused"], m["duplicates"], m["skipped"]) == \
        (300, 300, 70, 0, 230, 0)
    assert m["tokens"] == sum(len(s) for s in qwen_embedder.tokenize([r["text"] for r in rows[:70]]))
    assert encode(src, "-m", qwen, "-o", out, "--commit-every", "32", cache=cache).exit_code == 0
    assert (manifest_of(out)["embedded"], manifest_of(out)["reused"], manifest_of(out)["duplicates"]) == (0, 70, 230)
    streamed = CliRunner().invoke(main, ["encode", str(src), "-m", qwen, "--no-cache", "--commit-every", "16", "-q"])
    lines = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert [d["id"] for d in lines] == [r["id"] for r in rows] and [d["index"] for d in lines] == list(range(300))
    assert cos_rows(np.array([d["embedding"] for d in lines], np.float32), expect).min() > 0.99999
    npy = tmp_path / "v.npy"
    assert encode(src, "-m", qwen, "-o", npy, "--no-cache", "--commit-every", "7").exit_code == 0
    assert np.load(npy).shape == (300, 64) and cos_rows(np.load(npy), expect).min() > 0.99999
    got, stats, bad = run_job(read_corpus([str(src)]).records, qwen_embedder, JobSpec(window=50))
    assert got.ids == [r["id"] for r in rows] and not bad and (stats.embedded, stats.duplicates) == (70, 230)
    assert cos_rows(got.vectors, expect).min() > 0.99999


def test_keep_text_adds_the_text_of_each_row(tmp_path, qwen):
    rows = docs(30)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "v.parquet"
    assert encode(src, "-m", qwen, "-o", out, "--keep-text", "--commit-every", "8", "--no-cache").exit_code == 0
    table = pq.read_table(out)
    assert table.column("text").to_pylist() == [r["text"] for r in rows] and manifest_of(out)["keep_text"] is True
    jl = tmp_path / "v.jsonl"
    assert encode(src, "-m", qwen, "-o", jl, "--keep-text", "--no-cache").exit_code == 0
    assert [json.loads(line)["text"] for line in jl.read_text().splitlines()] == [r["text"] for r in rows]
    assert encode(src, "-m", qwen, "-o", tmp_path / "plain.parquet", "--no-cache").exit_code == 0
    assert "text" not in pq.read_table(tmp_path / "plain.parquet").column_names
    assert manifest_of(tmp_path / "plain.parquet")["keep_text"] is False
    assert encode(src, "-m", qwen, "-o", tmp_path / "v.npy", "--keep-text").exit_code != 0


PEAK_RSS = """
import json, resource, sys
from pathlib import Path
import pyarrow.parquet
from gguf_embed import Embedder
from gguf_embed.corpus import JobSpec
from gguf_embed.corpus.pipeline import CorpusRequest, run_corpus
from tools.texts import VARIED_TEXTS

model, n, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
src = folder / f"in{n}.jsonl"
with open(src, "w") as fh:
    for i in range(n):
        fh.write(json.dumps({"id": f"d{i}", "text": f"doc {i % 40} " + "word " * 200}) + "\\n")

def peak_kib():  # the job's peak: VmHWM after a reset (Linux), else ru_maxrss
    try:
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

with Embedder(model, n_threads=1) as emb:
    emb.embed(["warm up"])
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    done = run_corpus(CorpusRequest(inputs=(str(src),), output=folder / f"out{n}.parquet", fmt="parquet",
                                    cache=folder / f"c{n}.sqlite"), emb, JobSpec())
    print(done.count, peak_kib())
"""


def test_peak_memory_does_not_grow_with_the_corpus(tmp_path, qwen):
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def peak_kib(n: int) -> int:
        res = subprocess.run([sys.executable, "-c", PEAK_RSS, qwen, str(n), str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        count, rss = map(int, res.stdout.split())
        assert count == n
        return rss

    small, big = peak_kib(2000), peak_kib(20000)
    # 1 KB texts, 40 distinct: held in memory, 18,000 more records cost ~25 MiB (records, texts, vectors, the
    # table); streamed, only the ids map (~220 bytes an id) and the bounded SQLite page caches grow
    assert big - small < 10 * 1024, (small, big)


def test_sigkill_after_seconds_then_rerun_equals_uninterrupted(tmp_path, qwen, qwen_embedder):
    rows = [{"id": f"k{i}", "text": f"note {i} on item {i % 501}"} for i in range(3000)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cache, out = tmp_path / "c.sqlite", tmp_path / "out.parquet"
    cmd = [sys.executable, "-m", "gguf_embed.cli", "encode", str(src), "-m", qwen, "-o", str(out), "-q",
           "--cache", str(cache), "--commit-every", "256", "--threads", "1"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
    deadline, done = time.monotonic() + 60, 0
    while time.monotonic() < deadline and proc.poll() is None and done < 400:
        time.sleep(0.2)
        if cache.exists():
            try:
                with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5) as db:
                    done = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    res = encode(src, "-m", qwen, "-o", out, "--commit-every", "256", cache=cache)
    assert res.exit_code == 0, res.output
    m = manifest_of(out)
    assert m["reused"] >= 400 and m["reused"] + m["embedded"] == 3000 and m["count"] == 3000
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [r["id"] for r in rows]
    expect = qwen_embedder.embed([r["text"] for r in rows]).embeddings
    assert cos_rows(np.array(table.column("embedding").to_pylist(), np.float32), expect).min() > 0.99999

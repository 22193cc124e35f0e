"""Text UTF-8 cannot encode (a lone UTF-16 surrogate: valid JSON as ``"\\ud800"``, common in scraped
data) is a 4xx naming the input on every route, and a one-line error naming the file and line in a
corpus, never a traceback or a 500. Also the other request bodies that used to escape as 500s."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from gguf_embed.cli import main
from gguf_embed.errors import GGUFEmbedError, InvalidTextError, check_text, text_problem
from gguf_embed.server import create_app
from gguf_embed.server.embeddings import parse_request
from gguf_embed.server.rerank import parse_rerank

LONE = "\ud800"


def body(obj) -> bytes:
    return json.dumps(obj).encode()  # ensure_ascii: the surrogate travels as the escape "\ud800"


@pytest.mark.quick
def test_the_one_check():
    assert text_problem("fine, even 😀 and é") is None
    assert check_text("ok", "input 0") == "ok"
    why = text_problem("ab" + LONE)
    assert "lone UTF-16 surrogate '\\ud800' at character 2" in why
    with pytest.raises(InvalidTextError) as e:
        check_text("x\udcff", "input 4", param="input", index=4)
    assert (e.value.status_code, e.value.code, e.value.param, e.value.index) == (400, "invalid_text", "input", 4)
    assert e.value.message.startswith("input 4 has a lone UTF-16 surrogate '\\udcff'")


def wait_ready(c: TestClient, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while c.get("/health").status_code != 200:
        assert time.time() < deadline, "models did not load"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def client(minilm_embedder, qwen_reranker):
    app = create_app([minilm_embedder, qwen_reranker], max_inputs=64)
    with TestClient(app) as c:
        wait_ready(c)
        yield c


ROUTE_CASES = {
    "input string": ("/v1/embeddings", {"input": "abc" + LONE}, "input", "input 0 "),
    "input list": ("/v1/embeddings", {"input": ["fine", "also fine", LONE + "x"]}, "input", "input 2 "),
    "model": ("/v1/embeddings", {"input": "hi", "model": "m" + LONE}, "model", "'model' "),
    "instruction": ("/embeddings", {"input": "hi", "instruction": LONE}, "instruction", "'instruction' "),
    "query": ("/v1/rerank", {"query": "q" + LONE, "documents": ["a"]}, "query", "'query' "),
    "document": ("/v1/rerank", {"query": "q", "documents": ["a", "b" + LONE]}, "documents", "documents[1] "),
    "document object": ("/v2/rerank", {"query": "q", "documents": ["a", {"text": "\udfff"}]}, "documents",
                        "documents[1] "),
    "tei texts": ("/v1/rerank", {"query": "q", "texts": ["a", "b", "c" + LONE]}, "texts", "texts[2] "),
    "rerank instruction": ("/v1/rerank", {"query": "q", "documents": ["a"], "instruction": "\udbff"},
                           "instruction", "'instruction' "),
    "rerank model": ("/v1/rerank", {"query": "q", "documents": ["a"], "model": LONE}, "model", "'model' "),
}


@pytest.mark.parametrize("case", sorted(ROUTE_CASES))
def test_a_lone_surrogate_is_a_400_naming_the_input(client, minilm_embedder, qwen_reranker, case):
    path, obj, param, what = ROUTE_CASES[case]
    obj = {"model": (minilm_embedder if "embeddings" in path else qwen_reranker).name, **obj}
    r = client.post(path, content=body(obj), headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["code"], err["param"]) == ("invalid_request_error", "invalid_text", param)
    assert err["message"].startswith(what) and "lone UTF-16 surrogate" in err["message"], err["message"]


def test_a_paired_surrogate_escape_is_fine(client, minilm_embedder):
    raw = b'{"input": ["smile \\ud83d\\ude00"], "model": "%s"}' % minilm_embedder.name.encode()
    r = client.post("/v1/embeddings", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == minilm_embedder.dimensions


@pytest.mark.parametrize("raw, expect", [
    (b'{"input": 1' + b"1" * 5000 + b"}", "not valid JSON: Exceeds the limit (4300 digits)"),  # int() limit
    (b"[" * 50000, "nested too deeply"),
    (b'{"input": [[1, 99999999999999999999999]]}', "input 0 has token ids outside 0..2147483647"),
    (b'{"input": [-1], "model": "all-minilm-l6-v2"}', "input 0 has token ids outside 0..30521"),  # the vocabulary
    (b'{"input": "\xff"}', "not valid JSON"),
])
def test_other_bodies_that_escaped_as_500s(client, raw, expect):
    for path in ("/v1/embeddings", "/v1/rerank"):
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        if path == "/v1/rerank" and "token ids" in expect:
            assert r.status_code == 400  # no input field there: another 400
            continue
        assert r.status_code == 400, (path, r.text)
        assert expect in r.json()["error"]["message"], r.text


@pytest.mark.quick
def test_parsers_name_the_field_directly():
    with pytest.raises(InvalidTextError, match=r"^input 1 has a lone"):
        parse_request(body({"input": ["a", LONE]}), max_inputs=8, default_truncate="error")
    with pytest.raises(InvalidTextError, match=r"^documents\[0\] has a lone") as e:
        parse_rerank(body({"query": "q", "documents": [{"text": LONE}]}), shape="v1", max_documents=8)
    assert e.value.index == 0
    for raw in (b"[" * 50000, b'{"query": 1' + b"1" * 5000 + b"}"):
        with pytest.raises(GGUFEmbedError) as e:
            parse_rerank(raw, shape="v2", max_documents=8)
        assert e.value.status_code == 400


def test_the_python_api_gives_an_error_not_a_traceback(minilm_embedder):
    with pytest.raises(InvalidTextError, match="lone UTF-16 surrogate"):
        minilm_embedder.embed(["fine", "bad " + LONE])


# --- corpus and command line ----------------------------------------------------------------


def write_lines(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    return str(path)


def encode(*args):
    return CliRunner().invoke(main, ["encode", *map(str, args), "-q", "--threads", "1"])


def test_encode_names_the_file_and_line(tmp_path, minilm_gguf):
    src = write_lines(tmp_path / "in.jsonl", [{"id": "a", "text": "one"}, {"id": "b", "text": "tw" + LONE + "o"}])
    out = tmp_path / "out.jsonl"
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--cache", tmp_path / "c.db")
    assert res.exit_code == 1
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, res.output
    assert f"{src} line 2: field 'text' has a lone UTF-16 surrogate '\\ud800' at character 2" in line, line
    assert not out.exists()


def test_encode_skip_bad_sets_the_records_aside(tmp_path, minilm_gguf):
    rows = [{"id": "a", "text": "one"}, {"id": "b", "text": LONE}, {"id": "c" + LONE, "text": "three"},
            {"id": "d", "text": "four", "other": LONE}]  # a field that is not read may hold anything
    src = write_lines(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--skip-bad", "--cache", tmp_path / "c.db")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a", "d"]
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text("utf-8").splitlines()]
    assert [(e["where"], e["id"]) for e in errors] == [(f"{src} line 2", "b"), (f"{src} line 3", None)]
    assert "field 'text' has a lone UTF-16 surrogate" in errors[0]["error"]
    assert "the id has a lone UTF-16 surrogate" in errors[1]["error"]


def test_rerank_jsonl_documents_and_a_non_utf8_argument(tmp_path, tiny_reranker_gguf):
    model = str(tiny_reranker_gguf("F32"))
    docs = write_lines(tmp_path / "docs.jsonl", [{"text": "fine"}, {"text": "bad" + LONE}])
    res = CliRunner().invoke(main, ["rerank", "a query", docs, "-m", model, "--threads", "1"])
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: {docs} line 2: field 'text' has a lone UTF-16 surrogate '\\ud800' at character 3, which UTF-8 "
        "cannot encode; remove it or pair it with its other half"]
    # a query that is not UTF-8 on the command line reaches Python as "\udcff" (surrogateescape)
    plain = tmp_path / "docs.txt"
    plain.write_text("fine\nalso fine\n")
    res = CliRunner().invoke(main, ["rerank", "caf\udcff", str(plain), "-m", model, "--threads", "1"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert "lone UTF-16 surrogate '\\udcff'" in res.output and "Traceback" not in res.output


def test_parquet_strings_that_are_not_utf8(tmp_path, minilm_gguf):
    """Arrow does not check a string column's bytes on read: the bad rows are named, not a traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = pa.array([b"fine", b"\xff\xfe bad", b"\xed\xa0\x80"], pa.binary()).view(pa.string())  # the last: a surrogate
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": texts}), src)
    out = tmp_path / "out.jsonl"
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--no-cache")
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        f"Error: {src} row 1: field 'text' is not UTF-8 text (byte 0)"], res.output
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--no-cache", "--skip-bad")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a"]
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["where"], e["id"]) for e in errors] == [(f"{src} row 1", "b"), (f"{src} row 2", "c")]

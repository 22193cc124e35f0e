"""A vector with a NaN or inf (reported from some GPU backends) is never returned or cached: the call
fails naming the input, the llama.cpp context is rebuilt, and the next call works.

The NaN is injected by wrapping ``llama.Context.run``: every output row of a sequence holding the
poison token comes back NaN, on the plain path (a row per token) and the fast path (one per sequence).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from gguf_embed.cli import main
from gguf_embed.corpus import VectorCache
from gguf_embed.engine import llama
from gguf_embed.engine.scheduler import Scheduler
from gguf_embed.errors import NonFiniteOutputError
from gguf_embed.server import create_app

from .helpers import cos

CLEAN = ["the sky is blue", "apples and pears", "a short note"]
POISON_TEXT = "zebra"


def poison_ids(session, clean_seqs, poison_seq) -> np.ndarray:
    """Tokens of the poisoned sequence that no clean sequence has."""
    seen = set(np.concatenate(clean_seqs).tolist()) | set(session.frame.prefix) | set(session.frame.suffix)
    ids = np.array(sorted(set(poison_seq.tolist()) - seen), dtype=np.int32)
    assert len(ids), "the poison text shares every token with the clean ones"
    return ids


def poison(monkeypatch, ids: np.ndarray) -> None:
    real = llama.Context.run

    def run(self, tokens, pos, seq, out=None):
        rows = real(self, tokens, pos, seq, out)
        bad_seqs = np.unique(np.asarray(seq)[np.isin(tokens, ids)])
        if len(bad_seqs):
            row_seq = np.asarray(seq) if out is None else np.asarray(seq)[np.asarray(out, dtype=bool)]
            rows = rows.copy()
            rows[np.isin(row_seq, bad_seqs)] = np.nan
        return rows

    monkeypatch.setattr(llama.Context, "run", run)


@pytest.fixture
def embed_poison(monkeypatch, minilm_embedder):
    ids = poison_ids(minilm_embedder.session, minilm_embedder.tokenize(CLEAN), minilm_embedder.tokenize(
        [POISON_TEXT])[0])
    poison(monkeypatch, ids)
    return monkeypatch


def test_embed_names_the_input_and_the_context_is_rebuilt(minilm_embedder, monkeypatch):
    want = minilm_embedder.embed(CLEAN).embeddings
    ids = poison_ids(minilm_embedder.session, minilm_embedder.tokenize(CLEAN),
                     minilm_embedder.tokenize([POISON_TEXT])[0])
    poison(monkeypatch, ids)
    before = minilm_embedder.session.ctx
    with pytest.raises(NonFiniteOutputError) as e:
        minilm_embedder.embed([CLEAN[0], CLEAN[1], f"a {POISON_TEXT} here", CLEAN[2]])
    err = e.value
    assert (err.index, err.status_code, err.code, err.param) == (2, 500, "non_finite_output", "input")
    assert err.message.startswith("the model's vector for input 2 is not finite (NaN or inf)")
    assert minilm_embedder.session.ctx is not before and minilm_embedder.session.ctx.ptr
    got = minilm_embedder.embed(CLEAN).embeddings  # still wrapped: the clean texts work on the new context
    assert np.isfinite(got).all() and cos(got, want).min() >= 0.99999


def test_the_fast_path_is_checked_too(qwen_embedder, monkeypatch):
    assert qwen_embedder.fast_path
    poison(monkeypatch, poison_ids(qwen_embedder.session, qwen_embedder.tokenize(CLEAN),
                                   qwen_embedder.tokenize([POISON_TEXT])[0]))
    with pytest.raises(NonFiniteOutputError) as e:
        qwen_embedder.embed([POISON_TEXT, CLEAN[0]])
    assert e.value.index == 0
    assert qwen_embedder.fast_path and np.isfinite(qwen_embedder.embed(CLEAN).embeddings).all()


class NaNSession:
    """A fake session: rows are [first token, call]; a sequence starting with 13 fails its call, and
    the first call waits for ``gate``."""

    name, n_embd = "nan", 2

    def __init__(self):
        self.calls: list[list[int]] = []
        self.gate = threading.Event()

    def rows(self, seqs, alone=None):
        if not self.calls:
            self.gate.wait(5)
        firsts = [int(s[0]) for s in seqs]
        self.calls.append(firsts)
        if 13 in firsts:
            raise NonFiniteOutputError.for_input(firsts.index(13))
        return np.array([[f, len(self.calls)] for f in firsts], dtype=np.float32)


@pytest.mark.quick
def test_the_scheduler_fails_only_the_request_it_belongs_to():
    session = NaNSession()
    sched = Scheduler(session, max_batch_tokens=1000)

    async def main():
        seq = lambda t: np.full(3, t, dtype=np.int32)  # noqa: E731
        first = asyncio.ensure_future(sched.rows([seq(0)]))
        await asyncio.sleep(0.05)  # the worker waits in the first call while three more requests queue
        jobs = [asyncio.ensure_future(sched.rows([seq(t) for t in ts])) for ts in ([1, 2], [5, 13, 6], [7])]
        await asyncio.sleep(0.05)
        session.gate.set()
        return await asyncio.gather(first, *jobs, return_exceptions=True)

    try:
        _, good, bad, later = asyncio.run(main())
    finally:
        sched.close()
    assert session.calls[1] == [1, 2, 5, 13, 6, 7]  # the three share one batch, which fails
    assert session.calls[2:] == [[1, 2, 7]]  # the other two run again, on their own
    assert isinstance(bad, NonFiniteOutputError) and bad.index == 1 and "input 1 " in bad.message
    assert good[:, 0].tolist() == [1, 2] and later[:, 0].tolist() == [7]


def test_the_server_fails_that_request_and_caches_nothing_of_it(tmp_path, minilm_embedder, embed_poison):
    cache = tmp_path / "cache.sqlite"
    app = create_app([minilm_embedder], cache=cache)
    with TestClient(app) as client:
        deadline = time.time() + 30
        while client.get("/health").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.05)
        r = client.post("/v1/embeddings", json={"input": [CLEAN[0], f"one {POISON_TEXT}"]})
        assert r.status_code == 500, r.text
        err = r.json()["error"]
        assert (err["type"], err["code"], err["param"]) == ("server_error", "non_finite_output", "input")
        assert err["message"].startswith("the model's vector for input 1 is not finite")
        r = client.post("/v1/embeddings", json={"input": CLEAN})
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        assert cos(got, minilm_embedder.embed(CLEAN).embeddings).min() >= 0.99999
        with VectorCache(cache) as store:
            assert store.stats()["vectors"] == len(CLEAN)  # the failed request stored nothing
        embed_poison.undo()
        r = client.post("/v1/embeddings", json={"input": [f"one {POISON_TEXT}"]})
        assert r.status_code == 200 and np.isfinite(r.json()["data"][0]["embedding"]).all()
        metrics = client.get("/metrics").text
    assert "non_finite_output" in metrics


def test_rerank_names_the_document(monkeypatch, qwen_reranker):
    query, docs = "what is it?", ["apples and pears", "zebra crossing"]
    seqs = qwen_reranker.tokenize_pairs(query, docs)
    poison(monkeypatch, poison_ids(qwen_reranker.session, seqs[:1], seqs[1]))
    app = create_app([qwen_reranker])
    with TestClient(app) as client:
        deadline = time.time() + 30
        while client.get("/health").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.05)
        r = client.post("/v1/rerank", json={"query": query, "documents": docs})
        assert r.status_code == 500, r.text
        err = r.json()["error"]
        assert err["param"] == "documents" and "document 1 with the query is not finite" in err["message"]
        r = client.post("/v1/rerank", json={"query": query, "documents": docs[:1]})
        assert r.status_code == 200 and np.isfinite(r.json()["results"][0]["relevance_score"])


def encode(*args):
    return CliRunner().invoke(main, ["encode", *map(str, args), "-q", "--threads", "1"])


def test_a_corpus_record_fails_naming_file_and_line(tmp_path, minilm_gguf, embed_poison):
    src = tmp_path / "in.jsonl"
    rows = [{"id": "a", "text": CLEAN[0]}, {"id": "b", "text": f"a {POISON_TEXT}"}, {"id": "c", "text": CLEAN[1]}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, cache = tmp_path / "out.jsonl", tmp_path / "c.db"
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--cache", cache)
    assert res.exit_code == 1 and not out.exists()
    assert res.output.strip().splitlines() == [
        f"Error: {src} line 2: the model gave a vector with NaN or inf values (not cached; the llama.cpp context "
        "was rebuilt)"], res.output
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--cache", cache, "--skip-bad")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c"]
    errors = [json.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["where"], e["id"]) for e in errors] == [(f"{src} line 2", "b")]
    assert "NaN or inf" in errors[0]["error"]
    embed_poison.undo()
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--cache", cache)
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert (manifest["embedded"], manifest["reused"]) == (1, 2)  # only the good vectors were cached
    vectors = [json.loads(line)["embedding"] for line in out.read_text().splitlines()]
    assert np.isfinite(vectors).all()


def test_a_per_token_job_fails_naming_file_and_line_too(tmp_path, minilm_gguf, embed_poison):
    src = tmp_path / "in.jsonl"
    rows = [{"id": "a", "text": CLEAN[0]}, {"id": "b", "text": f"a {POISON_TEXT}"}, {"id": "c", "text": CLEAN[1]}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--emit", "dense,tokens")
    assert res.exit_code == 1 and not out.exists()
    assert res.output.strip().splitlines() == [
        f"Error: {src} line 2: the model gave a vector with NaN or inf values (not cached; the llama.cpp context "
        "was rebuilt)"], res.output
    res = encode(src, "-m", minilm_gguf("F16"), "-o", out, "--emit", "dense,tokens", "--skip-bad")
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in got] == ["a", "c"] and np.isfinite(got[0]["token_embeddings"]).all()

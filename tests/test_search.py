"""Search over an encoded Parquet: exact top-k against brute force, reranking, chunked rows, several
queries, one-line errors, FAISS recall and reuse."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gguf_embed.cli import main
from gguf_embed.search import SearchIndex, search, search_vectors
from gguf_embed.search.exact import top_k_exact

from tools.texts import VARIED_TEXTS

QUERY = "how do plants make energy from sunlight?"
TOPICS = ["Plants turn sunlight into chemical energy by photosynthesis", "The stock market fell sharply today",
          "A recipe for fresh bread with yeast and flour", "Chlorophyll absorbs light in the leaves of plants",
          "The football match ended in a draw", "Solar panels convert sunlight into electricity",
          "Volcanoes erupt when magma rises to the surface", "Green algae also use photosynthesis to grow"]


def docs() -> list[dict]:
    texts = TOPICS + [VARIED_TEXTS[i].splitlines()[0] for i in range(24)]
    return [{"id": f"d{i}", "text": t} for i, t in enumerate(dict.fromkeys(texts))]


def cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, [*map(str, args)])
    return res.exit_code, res.output


def encode_index(tmp: Path, model, rows: list[dict], *extra) -> Path:
    src = tmp / "docs.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp / "index.parquet"
    code, output = cli("encode", src, "-m", model, "-o", out, "-q", "--threads", "1", "--cache", tmp / "c.db", *extra)
    assert code == 0, output
    return out


def jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def minilm(minilm_gguf):
    return minilm_gguf("F16")


@pytest.fixture(scope="module")
def index(tmp_path_factory, minilm):
    return encode_index(tmp_path_factory.mktemp("search"), minilm, docs())


def brute_force(index: Path, q: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    table = pq.read_table(index)
    vecs = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32).reshape(len(table), -1)
    scores = vecs @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return [table.column("id")[int(i)].as_py() for i in order], scores[order]


def test_exact_top_k_equals_brute_force(index, minilm, minilm_embedder):
    code, out = cli("search", QUERY, "--index", index, "-m", minilm, "--top-k", 7, "--format", "jsonl", "--threads", 1)
    assert code == 0, out
    rows = jsonl(out)
    q = minilm_embedder.embed([QUERY], input_type="query").embeddings[0]
    ids, scores = brute_force(index, q, 7)
    assert [r["id"] for r in rows] == ids
    assert [r["rank"] for r in rows] == list(range(1, 8))
    np.testing.assert_allclose([r["score"] for r in rows], scores, atol=1e-6)
    assert set(rows[0]) == {"rank", "id", "score"}  # no chunk columns, no stored text
    hits = search(index, QUERY, minilm_embedder, top_k=7)[0]  # the same from Python
    assert [h.id for h in hits] == ids


def test_model_found_from_manifest(index, minilm, model_dir):
    code, out = cli("search", QUERY, "--index", index, "--models-dir", model_dir, "--top-k", 3, "--format", "jsonl")
    assert code == 0, out
    code2, out2 = cli("search", QUERY, "--index", index, "-m", minilm, "--top-k", 3, "--format", "jsonl")
    assert [r["id"] for r in jsonl(out)] == [r["id"] for r in jsonl(out2)]


def test_small_batches_keep_the_same_top_k(index, minilm_embedder, monkeypatch):
    """The running top-k over many small batches gives what one pass over everything gives."""
    import gguf_embed.search.exact as s

    q = minilm_embedder.embed([QUERY, "bread"], input_type="query").embeddings
    whole = top_k_exact(SearchIndex(index), q, 5)
    monkeypatch.setattr(s, "MIN_BATCH_ROWS", 3)
    monkeypatch.setattr(s, "MAX_BATCH_ROWS", 3)
    np.testing.assert_array_equal(top_k_exact(SearchIndex(index), q, 5)[1], whole[1])


def test_rerank_gives_the_rerank_command_order(index, minilm, cross_encoder_gguf, tmp_path):
    code, out = cli("search", QUERY, "--index", index, "-m", minilm, "--top-k", 8, "--format", "jsonl")
    recall = jsonl(out)
    code, out = cli("search", QUERY, "--index", index, "-m", minilm, "--top-k", 8, "--rerank", cross_encoder_gguf,
                    "--top-n", 5, "--format", "jsonl")
    assert code == 0, out
    rows = jsonl(out)
    text_of = {d["id"]: d["text"] for d in docs()}
    (tmp_path / "top.txt").write_text("".join(text_of[r["id"]] + "\n" for r in recall), encoding="utf-8")
    code, ref = cli("rerank", QUERY, tmp_path / "top.txt", "-m", cross_encoder_gguf, "--top-n", 5, "--format", "jsonl")
    assert code == 0, ref
    ref = jsonl(ref)
    assert [r["text"] for r in rows] == [r["text"] for r in ref]
    np.testing.assert_allclose([r["score"] for r in rows], [r["score"] for r in ref], atol=1e-6)
    sim = {r["id"]: r["score"] for r in recall}
    assert all(abs(r["similarity"] - sim[r["id"]]) < 1e-6 for r in rows)


def test_model_mismatch_is_refused(index, tiny_qwen_gguf, minilm, tmp_path):
    code, out = cli("search", QUERY, "--index", index, "-m", tiny_qwen_gguf("F32"))
    assert code != 0 and "another space" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1
    # a manifest whose sha256 is not this file's: the same model name is not enough
    copy = tmp_path / index.name
    copy.write_bytes(index.read_bytes())
    man = json.loads(Path(f"{index}.manifest.json").read_text())
    Path(f"{copy}.manifest.json").write_text(json.dumps({**man, "model_sha256": "0" * 64}))
    code, out = cli("search", QUERY, "--index", copy, "-m", minilm)
    assert code != 0 and "another space" in out


def test_chunked_rows_carry_spans(tmp_path, minilm, minilm_embedder, cross_encoder_gguf):
    long = [{"id": f"long{i}", "text": " ".join(TOPICS[i:] + TOPICS[:i])} for i in range(4)]
    idx = encode_index(tmp_path, minilm, long, "--chunk-tokens", 24)
    code, out = cli("search", QUERY, "--index", idx, "-m", minilm, "--top-k", 5, "--format", "jsonl")
    assert code == 0, out
    rows = jsonl(out)
    assert rows and all({"chunk", "start", "end"} <= set(r) for r in rows)
    table = pq.read_table(idx).to_pylist()
    spans = {(r["id"], r["chunk"]): (r["start"], r["end"]) for r in table}
    assert all(spans[(r["id"], r["chunk"])] == (r["start"], r["end"]) for r in rows)
    hits = search(idx, QUERY, minilm_embedder, top_k=3, reranker=cross_encoder_gguf)[0]
    text_of = {d["id"]: d["text"] for d in long}
    assert all(h.text == text_of[h.id][h.start:h.end] for h in hits)


def test_queries_file_gives_one_block_each(index, minilm, tmp_path):
    qs = [QUERY, "baking bread at home", "who won the game"]
    (tmp_path / "q.txt").write_text("\n".join(qs) + "\n", encoding="utf-8")
    code, out = cli("search", "--queries", tmp_path / "q.txt", "--index", index, "-m", minilm, "--top-k", 4,
                    "--format", "jsonl")
    assert code == 0, out
    rows = jsonl(out)
    assert [r["query"] for r in rows] == [0] * 4 + [1] * 4 + [2] * 4
    for qi, q in enumerate(qs):
        _, single = cli("search", q, "--index", index, "-m", minilm, "--top-k", 4, "--format", "jsonl")
        assert [r["id"] for r in rows if r["query"] == qi] == [r["id"] for r in jsonl(single)]
    code, out = cli("search", "--queries", tmp_path / "q.txt", "--index", index, "-m", minilm, "--format", "table")
    assert code == 0 and out.count("results for") == 3


def test_user_errors_are_one_line(index, minilm, tmp_path):
    bare = tmp_path / "bare.parquet"
    bare.write_bytes(index.read_bytes())
    cases = [
        (("search", QUERY, "--index", tmp_path / "missing.parquet", "-m", minilm), "no index"),
        (("search", QUERY, "--index", bare, "-m", minilm), "no manifest"),
        (("search", QUERY, "--index", index, "-m", minilm, "--top-k", 0), "--top-k"),
        (("search", QUERY, "--index", index, "-m", minilm, "--rerank", minilm), "not a reranker"),
        (("search", "--index", index, "-m", minilm), "QUERY"),
    ]
    for argv, needle in cases:
        code, out = cli(*argv)
        assert code != 0 and needle in out and "Traceback" not in out, (argv, out)


def test_rerank_without_texts_is_one_line(tmp_path, minilm, cross_encoder_gguf):
    idx = encode_index(tmp_path, minilm, docs()[:6])
    (tmp_path / "docs.jsonl").unlink()
    code, out = cli("search", QUERY, "--index", idx, "-m", minilm, "--rerank", cross_encoder_gguf)
    assert code != 0 and "stores no text" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_unnormalized_index_scores_are_cosines(tmp_path, minilm, minilm_embedder):
    idx = encode_index(tmp_path, minilm, docs(), "--no-normalize")
    hits = search(idx, QUERY, minilm_embedder, top_k=5)[0]
    q = minilm_embedder.embed([QUERY], input_type="query").embeddings[0]
    table = pq.read_table(idx)
    vecs = np.asarray(table.column("embedding").combine_chunks().flatten(), np.float32).reshape(len(table), -1)
    cosines = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ q
    assert [h.row for h in hits] == list(np.argsort(-cosines)[:5])
    np.testing.assert_allclose([h.score for h in hits], np.sort(cosines)[::-1][:5], atol=1e-6)


# --- FAISS ---------------------------------------------------------------------------------------


def clustered_unit_vectors(rng, n: int, d: int, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_index(path: Path, vecs: np.ndarray) -> Path:
    n, d = vecs.shape
    flat = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1), pa.float32()), d)
    pq.write_table(pa.table({"id": pa.array([f"v{i}" for i in range(n)]), "embedding": flat}), path,
                   row_group_size=65536)
    Path(f"{path}.manifest.json").write_text(json.dumps(
        {"model": "synthetic", "model_file": "none.gguf", "model_sha256": "0" * 64, "dimensions": d,
         "normalized": True, "format": "parquet"}))
    return path


def test_faiss_recall_and_reuse(tmp_path):
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    d = 64
    centres = rng.standard_normal((1000, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    path = write_index(tmp_path / "big.parquet", clustered_unit_vectors(rng, 100_000, d, centres))
    queries = clustered_unit_vectors(rng, 200, d, centres)
    exact = search_vectors(path, queries, 10)
    t0 = time.perf_counter()
    approx = search_vectors(path, queries, 10, faiss="hnsw")
    built = time.perf_counter() - t0
    recall = np.mean([len({h.row for h in a} & {h.row for h in e}) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95, recall
    assert Path(f"{path}.faiss").is_file()
    meta = json.loads(Path(f"{path}.faiss.json").read_text())
    assert meta["kind"] == "hnsw" and meta["parquet"]["size"] == path.stat().st_size
    built_at = Path(f"{path}.faiss").stat().st_mtime_ns
    t0 = time.perf_counter()
    again = search_vectors(path, queries[:5], 10, faiss="hnsw")  # reused, not rebuilt
    assert time.perf_counter() - t0 < built and Path(f"{path}.faiss").stat().st_mtime_ns == built_at
    assert [h.row for h in again[0]] == [h.row for h in approx[0]]
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same bytes: the sha256 keeps it
    search_vectors(path, queries[:1], 10, faiss="hnsw")
    assert Path(f"{path}.faiss").stat().st_mtime_ns == built_at
    write_index(path, clustered_unit_vectors(rng, 1000, d, centres))  # another Parquet: rebuilt
    small = search_vectors(path, queries[:3], 10, faiss="hnsw")
    assert [h.row for h in small[0]] == [h.row for h in search_vectors(path, queries[:3], 10)[0]]
    assert json.loads(Path(f"{path}.faiss.json").read_text())["rows"] == 1000
    # IVF: 15 lists for 1,000 rows, every one probed by default, so exactly the exact top-k
    ivf = search_vectors(path, queries[:3], 10, faiss="ivf")
    assert json.loads(Path(f"{path}.faiss.json").read_text())["kind"] == "ivf"
    assert [[h.row for h in b] for b in ivf] == [[h.row for h in b] for b in search_vectors(path, queries[:3], 10)]


def test_faiss_from_the_command_line(index, minilm, monkeypatch):
    pytest.importorskip("faiss")
    args = ("search", QUERY, "--index", index, "-m", minilm, "--top-k", 5, "--format", "jsonl")
    code, out = cli(*args, "--faiss")
    assert code == 0, out
    _, exact = cli(*args)
    assert [r["id"] for r in jsonl(out)] == [r["id"] for r in jsonl(exact)]  # 32 rows: the graph finds them all
    np.testing.assert_allclose([r["score"] for r in jsonl(out)], [r["score"] for r in jsonl(exact)], atol=1e-5)
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)  # as without faiss installed
    code, out = cli(*args, "--faiss")
    assert code != 0 and "gguf-embed[faiss]" in out and "Traceback" not in out

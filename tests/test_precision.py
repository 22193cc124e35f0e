"""Compressed vectors: int8 / uint8 / binary / ubinary codes against their definition and
sentence-transformers' ``quantize_embeddings``, symmetric scales and per-dimension ranges fixed per
model, raw codes that rank like the floats, ``encode --precision``, search over codes and packed bits,
and Cohere's embed routes answering the real Cohere SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gguf_embed import Embedder
from gguf_embed.cli import main
from gguf_embed.search import search
from gguf_embed.store.codes import CalibrationStore, embed_codes, model_quantizer
from gguf_embed.errors import InvalidInputError
from gguf_embed.heads.precision import dequantize, hamming, quantize, ranges_from, scale_from
from gguf_embed.heads.pooling import postprocess
from gguf_embed.quality.raw_codes import raw_scoring
from gguf_embed.server.app import create_app
from tools.texts import VARIED_TEXTS

from .helpers import RunningServer, cos

REPO = Path(__file__).resolve().parent.parent
st_quantize = pytest.importorskip("sentence_transformers.util.quantization").quantize_embeddings


@pytest.fixture(scope="module")
def minilm_q(minilm_embedder):
    """MiniLM's per-dimension int8 quantizer, sentence-transformers' scheme (the calibration set runs once
    per test session, then is read back)."""
    return model_quantizer(minilm_embedder, "int8", scheme="per-dimension")


@pytest.fixture(scope="module")
def minilm_sym(minilm_embedder):
    """MiniLM's int8 quantizer in the default, symmetric scheme (one scale for the model)."""
    q = model_quantizer(minilm_embedder, "int8")
    assert q.scheme == "symmetric" and q.ranges is None
    return q


# --- the definitions -------------------------------------------------------------------------------


def test_bits_and_codes_match_the_definition_and_sentence_transformers(minilm_embedder, minilm_q):
    v = minilm_embedder.embed(VARIED_TEXTS).embeddings
    bits = np.packbits(v > 0, axis=-1)  # most significant bit first
    assert np.array_equal(quantize(v, "ubinary"), bits)
    assert np.array_equal(quantize(v, "binary"), (bits.astype(np.int16) - 128).astype(np.int8))
    for precision in ("binary", "ubinary"):
        assert np.array_equal(quantize(v, precision), st_quantize(v, precision))
    for precision in ("int8", "uint8"):
        ours = quantize(v, precision, minilm_q.ranges)
        assert ours.dtype == st_quantize(v, precision, ranges=minilm_q.ranges).dtype
        assert np.array_equal(ours, st_quantize(v, precision, ranges=minilm_q.ranges))
    # Hamming distance is the count of differing sign bits
    signs = v > 0
    assert np.array_equal(hamming(bits[:3], bits), (signs[:3, None, :] != signs[None, :, :]).sum(-1))


def test_int8_dequantised_keeps_the_direction_on_real_texts(minilm_embedder, minilm_q):
    v = minilm_embedder.embed(VARIED_TEXTS).embeddings
    for precision in ("int8", "uint8"):
        back = dequantize(quantize(v, precision, minilm_q.ranges), precision, minilm_q.ranges)
        assert cos(back, v).min() >= 0.99
    # the calibration set's own min/max (no margin) clips real texts more than the wider ranges do
    tight = ranges_from(np.load(minilm_q.calibration), margin=0.0)
    assert ((v < tight[0]) | (v > tight[1])).sum() > ((v < minilm_q.ranges[0]) | (v > minilm_q.ranges[1])).sum()


def test_symmetric_codes_match_their_definition(minilm_embedder, minilm_sym):
    """One scale for the model (the calibration set's largest |x|): int8 = round(x * 127 / scale) in
    -127..127, uint8 = int8 + 128; 0 is code 0, -x is the negated code; dequantised, x back to within
    half a step."""
    v = minilm_embedder.embed(VARIED_TEXTS).embeddings
    s = minilm_sym.scale
    assert s == scale_from(postprocess(np.load(minilm_sym.calibration), None, True)) and 0 < s < 1
    want = np.clip(np.rint(v.astype(np.float64) * 127 / float(s)), -127, 127)
    codes = quantize(v, "int8", scale=s)
    assert codes.dtype == np.int8 and np.abs(codes.astype(int) - want).max() <= 1  # float32 vs float64 rounding
    assert np.array_equal(quantize(-v, "int8", scale=s), -codes)
    assert not quantize(np.zeros((1, 8)), "int8", scale=s).any()
    u = quantize(v, "uint8", scale=s)
    assert u.dtype == np.uint8 and np.array_equal(u.astype(int), codes.astype(int) + 128)
    for precision, c in (("int8", codes), ("uint8", u)):
        back = dequantize(c, precision, scale=s)
        assert np.abs(np.clip(v, -s, s) - back).max() <= s / 127 / 2 * 1.001
        assert cos(back, v).min() >= 0.999
    assert quantize(np.full((1, 4), 9.0, np.float32), "int8", scale=s).tolist() == [[127] * 4]  # clipped


def test_codes_of_a_text_do_not_depend_on_its_batch(minilm_embedder, minilm_q, minilm_sym):
    """The scale and ranges are the model's, not the batch's, and the texts run batch-invariant: a text's
    codes are the same alone, inside any batch, in any order (sentence-transformers' batch-computed ranges
    give the same text other codes)."""
    codes = embed_codes(minilm_embedder, VARIED_TEXTS, "int8")
    v = minilm_embedder.embed(VARIED_TEXTS, batch_invariant=True).embeddings
    assert np.array_equal(codes, quantize(v, "int8", scale=minilm_sym.scale)) and np.array_equal(codes, minilm_sym(v))
    for i in (0, 7, len(v) - 1):
        assert np.array_equal(quantize(v[i:i + 1], "int8", scale=minilm_sym.scale)[0], codes[i])
    per_dim = embed_codes(minilm_embedder, VARIED_TEXTS, "int8", scheme="per-dimension")
    assert np.array_equal(per_dim, quantize(v, "int8", minilm_q.ranges))
    for i in (0, 7, len(v) - 1):
        assert np.array_equal(quantize(v[i:i + 1], "int8", minilm_q.ranges)[0], per_dim[i])
    assert np.array_equal(np.concatenate([embed_codes(minilm_embedder, [t], "int8", scheme="per-dimension")
                                          for t in VARIED_TEXTS[:8]]), per_dim[:8])
    alone = np.concatenate([embed_codes(minilm_embedder, [t], "int8") for t in VARIED_TEXTS])
    assert np.array_equal(alone, codes)
    order = np.random.default_rng(0).permutation(len(VARIED_TEXTS))
    mixed = embed_codes(minilm_embedder, [VARIED_TEXTS[i] for i in order] + ["an unrelated text"] * 9, "int8")
    assert np.array_equal(mixed[:len(order)], codes[order])
    for precision in ("uint8", "binary", "ubinary"):
        one = np.concatenate([embed_codes(minilm_embedder, [t], precision) for t in VARIED_TEXTS[:8]])
        assert np.array_equal(one, embed_codes(minilm_embedder, VARIED_TEXTS, precision)[:8])
    assert not np.array_equal(st_quantize(v[:8], "int8")[0], st_quantize(v, "int8")[0])


def test_batch_invariant_rows_are_bit_identical_at_any_threads_and_batch(minilm_gguf):
    """What the codes rest on: a batch-invariant row is the same bits alone, inside any batch, in any
    order and at any thread count; packed rows move by float noise with their batch (the reason for it)."""
    texts = VARIED_TEXTS[:24]
    with Embedder(minilm_gguf("F16"), n_threads=1) as one, Embedder(minilm_gguf("F16"), n_threads=2,
                                                                   batch_tokens=128) as two:
        ref = one.embed(texts, batch_invariant=True).embeddings
        assert np.array_equal(two.embed(texts[::-1], batch_invariant=True).embeddings[::-1], ref)
        assert np.array_equal(np.stack([two.embed([t], batch_invariant=True).embeddings[0] for t in texts]), ref)
        packed = two.embed(texts).embeddings
    assert cos(packed, ref).min() > 0.9999


def test_batch_invariant_on_the_qwen3_fast_path_and_across_batches(qwen_embedder, tiny_qwen_gguf):
    """The last-token fast path, queries with the instruction prompt, and a text longer than a batch
    (continued over several llama.cpp batches): batch-invariant rows are the same bits in any company."""
    assert qwen_embedder.fast_path
    texts = VARIED_TEXTS[:12] + [" ".join(VARIED_TEXTS[12:40])]  # the last one spans batches of 64 tokens
    with Embedder(tiny_qwen_gguf("F32"), batch_tokens=64) as small:
        assert len(small.tokenize(texts[-1:])[0]) > 64
        for input_type in ("document", "query"):
            ref = np.stack([small.embed([t], input_type=input_type, batch_invariant=True).embeddings[0]
                            for t in texts])
            got = small.embed(texts[::-1], input_type=input_type, batch_invariant=True).embeddings[::-1]
            assert np.array_equal(got, ref)
            assert np.array_equal(qwen_embedder.embed(texts, input_type=input_type, batch_invariant=True).embeddings,
                                  ref)  # another context, another batch size


def test_ranges_are_the_same_in_another_process(minilm_embedder, minilm_q, minilm_sym, minilm_gguf):
    codes = embed_codes(minilm_embedder, VARIED_TEXTS[:5], "int8")
    per_dim = embed_codes(minilm_embedder, VARIED_TEXTS[:5], "uint8", scheme="per-dimension")
    script = ("import sys, numpy as np\nfrom gguf_embed import Embedder\n"
              "from gguf_embed.store.codes import embed_codes, model_quantizer\n"
              f"emb = Embedder({str(minilm_gguf('F16'))!r})\n"
              f"np.save(sys.argv[1], embed_codes(emb, {VARIED_TEXTS[:5]!r}, 'int8'))\n"
              "np.save(sys.argv[2], model_quantizer(emb, 'int8', scheme='per-dimension').ranges)\n"
              "np.save(sys.argv[3], np.array([model_quantizer(emb, 'int8').scale]))\n"
              f"np.save(sys.argv[4], embed_codes(emb, {VARIED_TEXTS[:5]!r}, 'uint8', scheme='per-dimension'))\n")
    out = Path(minilm_q.calibration).parent
    subprocess.run([sys.executable, "-c", script, *(str(out / f"{n}.npy") for n in ("c", "r", "s", "u"))],
                   check=True, cwd=REPO, capture_output=True)
    assert np.array_equal(np.load(out / "r.npy"), minilm_q.ranges)  # read from the store, not recomputed
    assert np.load(out / "s.npy")[0] == minilm_sym.scale
    assert np.array_equal(np.load(out / "c.npy"), codes) and np.array_equal(np.load(out / "u.npy"), per_dim)


def test_ranges_follow_dimensions_and_normalisation(qwen_embedder, tmp_path):
    store = CalibrationStore(tmp_path)
    full = model_quantizer(qwen_embedder, "int8", store=store, scheme="per-dimension")
    cut = model_quantizer(qwen_embedder, "int8", dimensions=16, store=store, scheme="per-dimension")
    raw = model_quantizer(qwen_embedder, "uint8", normalize=False, store=store, scheme="per-dimension")
    assert cut.ranges.shape == (2, 16) and full.ranges.shape == (2, qwen_embedder.dimensions)
    assert not np.allclose(cut.ranges, full.ranges[:, :16])  # cut, then normalised again
    assert not np.allclose(raw.ranges, full.ranges)
    sym = {key: model_quantizer(qwen_embedder, "int8", store=store, **kw).scale
           for key, kw in (("full", {}), ("cut", {"dimensions": 16}), ("raw", {"normalize": False}))}
    rows = np.load(next(tmp_path.glob("*.calibration.npy")))
    for key, (dims, norm) in {"full": (None, True), "cut": (16, True), "raw": (None, False)}.items():
        assert sym[key] == scale_from(postprocess(rows, dims, norm))
    assert len(set(sym.values())) == 3
    assert len(list(tmp_path.glob("*.calibration.npy"))) == 1  # one calibration per model file


def test_unknown_precision_and_bits_that_do_not_fill_bytes(qwen_embedder, tmp_path):
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        embed_codes(qwen_embedder, ["a"], "int4")
    with pytest.raises(InvalidInputError, match="not a multiple of 8"):
        embed_codes(qwen_embedder, ["a"], "binary", dimensions=20)
    src = tmp_path / "a.txt"
    src.write_text("hello\n")
    res = CliRunner().invoke(main, ["encode", str(src), "-m", str(qwen_embedder.info.path), "--precision", "ubinary",
                                    "--dimensions", "20", "-o", str(tmp_path / "o.npy"), "-q"])
    assert res.exit_code != 0 and "not a multiple of 8" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(main, ["encode", str(src), "-m", str(qwen_embedder.info.path), "--precision", "int4"])
    assert res.exit_code == 2 and "int4" in res.output
    res = CliRunner().invoke(main, ["encode", str(src), "-m", str(qwen_embedder.info.path), "--precision", "int8",
                                    "--rescore-vectors", "int8", "-o", str(tmp_path / "o.parquet"), "-q"])
    assert res.exit_code == 1 and "binary or ubinary" in res.output and len(res.output.strip().splitlines()) == 1


# --- encode and search -----------------------------------------------------------------------------


def _encode(src: Path, model: Path, out: Path, precision: str, cache: Path, *extra: str) -> dict:
    res = CliRunner().invoke(main, ["encode", str(src), "-m", str(model), "-o", str(out), "--precision", precision,
                                    "--cache", str(cache), "-q", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())


def test_encode_writes_what_the_manifest_says(minilm_gguf, minilm_q, minilm_sym, tmp_path):
    model, cache = minilm_gguf("F16"), tmp_path / "c.sqlite"
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(t.replace("\n", " ") for t in VARIED_TEXTS) + "\n")
    man = _encode(src, model, tmp_path / "f.npy", "float", cache, "--batch-invariant")
    floats = np.load(tmp_path / "f.npy")
    assert man["batch_invariant"] is True and man["embedded"] == len(floats)
    for precision, fmt in (("int8", "parquet"), ("uint8", "npy"), ("binary", "npy"), ("ubinary", "parquet")):
        out = tmp_path / f"v-{precision}.{fmt}"
        # sentence-transformers' codes, asked for by name (the floats come from the cache: the same space)
        man = _encode(src, model, out, precision, cache, "--code-scheme", "per-dimension")
        assert man["batch_invariant"] is True and (man["reused"], man["embedded"]) == (len(floats), 0)
        q = man["quantization"]
        assert man["precision"] == precision == q["precision"] and q["dimensions"] == floats.shape[1]
        got = _read(out, fmt)
        ranges = np.array([q["ranges"]["min"], q["ranges"]["max"]], np.float32) if "ranges" in q else None
        assert got.dtype.name == q["dtype"] and got.shape == (len(floats), q["stored_width"])
        assert np.array_equal(got, st_quantize(floats, precision, ranges=ranges))
        if ranges is not None:
            assert np.array_equal(ranges, minilm_q.ranges) and Path(q["calibration_file"]).is_file()
            assert q["scheme"] == "per-dimension" and "scale" not in q
        # the default: symmetric codes, the scale in the manifest
        man = _encode(src, model, out, precision, cache)
        q = man["quantization"]
        if precision.endswith("binary"):
            assert np.array_equal(_read(out, fmt), got) and "scheme" not in q
            continue
        assert q["scheme"] == "symmetric" and q["scale"] == minilm_sym.scale and "ranges" not in q
        assert Path(q["calibration_file"]).is_file() and "127" in q["codes"]
        assert np.array_equal(_read(out, fmt), quantize(floats, precision, scale=np.float32(q["scale"])))
    lines = CliRunner().invoke(main, ["encode", str(src), "-m", str(model), "--precision", "ubinary", "--cache",
                                      str(cache), "-q"]).stdout.splitlines()
    assert json.loads(lines[0])["embedding"] == np.packbits(floats[0] > 0).tolist()


def _read(out: Path, fmt: str) -> np.ndarray:
    return np.load(out) if fmt == "npy" else np.stack(pq.read_table(out).column("embedding").to_numpy(
        zero_copy_only=False))


def test_binary_search_with_rescoring_finds_the_exact_top_hit(minilm_embedder, minilm_gguf, tmp_path):
    model, cache = minilm_gguf("F16"), tmp_path / "c.sqlite"
    src = tmp_path / "docs.txt"
    src.write_text("\n".join(t.replace("\n", " ") for t in VARIED_TEXTS) + "\n")
    queries = ["What is the capital of Australia?", "how do plants turn light into energy",
               "selling sea shells on the beach", "quarterly revenue growth", "page not found error"]
    tops = {}
    for precision in ("float", "binary", "int8"):
        _encode(src, model, tmp_path / f"{precision}.parquet", precision, cache)
        tops[precision] = search(tmp_path / f"{precision}.parquet", queries, minilm_embedder, top_k=3)
    _encode(src, model, tmp_path / "pd8.parquet", "int8", cache, "--code-scheme", "per-dimension")
    tops["pd8"] = search(tmp_path / "pd8.parquet", queries, minilm_embedder, top_k=3)
    man = _encode(src, model, tmp_path / "b8.parquet", "binary", cache, "--rescore-vectors", "int8")
    assert man["precision"] == "binary" and man["rescore"]["precision"] == "int8"
    assert man["rescore"]["scheme"] == "symmetric" and man["rescore"]["scale"] > 0
    tops["b8"] = search(tmp_path / "b8.parquet", queries, minilm_embedder, top_k=3)
    for qi in range(len(queries)):
        assert tops["binary"][qi][0].id == tops["int8"][qi][0].id == tops["float"][qi][0].id == tops["b8"][qi][0].id
        assert tops["pd8"][qi][0].id == tops["float"][qi][0].id
        # rescored with the stored int8 codes: the int8 index's own score for that row
        assert tops["b8"][qi][0].score == pytest.approx(tops["int8"][qi][0].score, abs=1e-5)
        assert tops["int8"][qi][0].score == pytest.approx(tops["float"][qi][0].score, abs=2e-3)
    # the rescored score is the cosine between the float query and the hit's sign vector
    q = minilm_embedder.embed(queries[:1], input_type="query").embeddings[0]
    hit = tops["binary"][0][0]
    row = pq.read_table(tmp_path / "float.parquet").column("embedding")[hit.row].as_py()
    signs = np.where(np.array(row) > 0, 1.0, -1.0)
    assert hit.score == pytest.approx(float(q @ signs / np.sqrt(len(q))), abs=1e-5)


# --- Cohere's routes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohere_server(minilm_embedder, tmp_path_factory):
    app = create_app([minilm_embedder], cache=tmp_path_factory.mktemp("cohere") / "vectors.sqlite")
    with RunningServer(app) as srv:
        yield srv.wait_ready()


def test_cohere_sdk_v2_embedding_types(cohere_server, minilm_embedder, minilm_sym):
    cohere = pytest.importorskip("cohere")
    co = cohere.ClientV2(base_url=cohere_server.url, api_key="x")
    texts = VARIED_TEXTS[:6]
    r = co.embed(texts=texts, model=minilm_embedder.name, input_type="search_document",
                 embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"])
    e = r.embeddings
    floats = np.array(e.float_, dtype=np.float32)
    assert cos(floats, minilm_embedder.embed(texts).embeddings).min() > 0.9999
    for precision in ("binary", "ubinary"):
        assert np.array_equal(np.array(getattr(e, precision)), st_quantize(floats, precision))
    for precision in ("int8", "uint8"):  # symmetric: one scale for the model, 0 at int8 code 0
        assert np.array_equal(np.array(getattr(e, precision)), quantize(floats, precision, scale=minilm_sym.scale))
    assert np.array_equal(np.frombuffer(__import__("base64").b64decode(e.base64[0]), "<f4"), floats[0])
    assert r.texts == texts and r.meta.billed_units.input_tokens > 0
    # a text alone gets the codes it got inside the batch
    alone = co.embed(texts=[texts[3]], model=minilm_embedder.name, input_type="search_document",
                     embedding_types=["int8"])
    assert alone.embeddings.int8[0] == e.int8[3]
    query = co.embed(texts=["what is a dog?"], model=minilm_embedder.name, input_type="search_query",
                     embedding_types=["ubinary"], truncate="END")
    assert len(query.embeddings.ubinary[0]) == minilm_embedder.dimensions // 8


def test_cohere_sdk_v1_shapes(cohere_server, minilm_embedder):
    cohere = pytest.importorskip("cohere")
    co = cohere.Client(base_url=cohere_server.url, api_key="x")
    plain = co.embed(texts=["hello", "world"], model=minilm_embedder.name, input_type="search_query")
    assert plain.response_type == "embeddings_floats" and len(plain.embeddings) == 2
    typed = co.embed(texts=["hello", "world"], input_type="classification", embedding_types=["int8", "binary"])
    assert typed.response_type == "embeddings_by_type"
    assert np.array_equal(np.array(typed.embeddings.binary), quantize(np.array(plain.embeddings, np.float32), "binary"))
    with pytest.raises(cohere.errors.BadRequestError) as err:
        co.embed(texts=["x"], embedding_types=["int4"])
    assert "int4" in err.value.body["message"]


def test_cohere_raw_codes_rank_like_the_floats(cohere_server, minilm_embedder, minilm_q):
    """What a vector store does with /v2/embed's codes: score them raw. 20 real texts (MiniLM): raw int8
    dot products and raw uint8 Euclidean distances rank neighbours as the floats do; a raw uint8 dot
    product (its +128 offset) and sentence-transformers' per-dimension codes do not."""
    texts = VARIED_TEXTS[:20]
    r = httpx.post(f"{cohere_server.url}/v2/embed", json={"texts": texts, "input_type": "search_document",
                                                          "embedding_types": ["float", "int8", "uint8"]}, timeout=60)
    e = r.json()["embeddings"]
    floats, int8, uint8 = (np.array(e[k]) for k in ("float", "int8", "uint8"))
    for got in (raw_scoring(int8, floats), raw_scoring(uint8, floats, "euclidean")):
        assert got.same_neighbour >= 0.95 and got.spearman >= 0.98, got
    assert raw_scoring(int8, floats).cos_min >= 0.999
    assert raw_scoring(uint8, floats).spearman < 0.9  # the offset: score uint8 by distance, or subtract 128
    per_dim = raw_scoring(quantize(floats.astype(np.float32), "int8", minilm_q.ranges), floats)
    assert per_dim.cos_min < 0.95 and per_dim.spearman < 0.98
    alone = [httpx.post(f"{cohere_server.url}/v2/embed", json={"texts": [texts[i]], "embedding_types": ["int8"]})
             .json()["embeddings"]["int8"][0] for i in (0, 19)]
    assert alone == [e["int8"][0], e["int8"][19]]


@pytest.mark.parametrize("body, param", [
    ({"texts": ["a"], "embedding_types": ["int4"]}, "int4"),
    ({"texts": []}, "texts"),
    ({"texts": ["a"], "input_type": "image"}, "input_type"),
    ({"texts": ["a"], "truncate": "MIDDLE"}, "truncate"),
    ({"texts": ["a"], "images": ["data:image/png;base64,AA=="]}, "images"),
    ({"texts": ["a"], "output_dimension": 100}, "384"),
    ({"texts": ["a"], "max_tokens": 8}, "max_tokens"),
    ({"texts": ["a " * 2000], "truncate": "NONE"}, "tokens"),
])
def test_cohere_bad_requests_are_4xx_in_cohere_shape(cohere_server, body, param):
    for version in ("v1", "v2"):
        r = httpx.post(f"{cohere_server.url}/{version}/embed", json=body)
        assert 400 <= r.status_code < 500 and set(r.json()) == {"id", "message"} and param in r.json()["message"]


def test_cohere_bits_need_whole_bytes(qwen_embedder):
    with RunningServer(create_app([qwen_embedder])) as srv:
        srv.wait_ready()
        r = httpx.post(f"{srv.url}/v2/embed", json={"texts": ["a"], "embedding_types": ["binary"],
                                                     "output_dimension": 20})
        assert r.status_code == 400 and "multiple of 8" in r.json()["message"]
        ok = httpx.post(f"{srv.url}/v2/embed", json={"texts": ["a"], "embedding_types": ["ubinary", "float"],
                                                      "output_dimension": 16}).json()
        assert ok["embeddings"]["ubinary"][0] == np.packbits(np.array(ok["embeddings"]["float"][0]) > 0).tolist()


def test_cohere_codes_do_not_depend_on_the_request_without_a_cache(minilm_embedder, minilm_q):
    """No vector cache: requests that arrive together share llama.cpp batches, yet each text's codes are
    those it gets alone (a request for codes runs batch-invariant)."""
    texts = VARIED_TEXTS[:12]
    want = embed_codes(minilm_embedder, texts, "int8")
    with RunningServer(create_app([minilm_embedder])) as srv:
        url = srv.wait_ready().url

        def post(body):
            r = httpx.post(f"{url}/v2/embed", json={"model": minilm_embedder.name, "input_type": "search_document",
                                                    "embedding_types": ["int8"], **body}, timeout=60)
            assert r.status_code == 200, r.text
            return r.json()["embeddings"]["int8"]

        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(post, [{"texts": texts}, {"texts": texts[::-1]}, {"texts": [texts[5]]},
                                       {"texts": ["another request's text"] * 20}]))
    assert np.array_equal(np.array(got[0]), want) and np.array_equal(np.array(got[1])[::-1], want)
    assert got[2][0] == want[5].tolist()

"""Late chunking: one pass over a document, each chunk's tokens mean-pooled, against
sentence-transformers' token states of the same passes (MiniLM, a tiny XLM-R with a prompt);
the corpus job's rows, cache keys and manifest; the HTTP flag; the refusal for Qwen3."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from gguf_embed import Embedder
from gguf_embed.cli import main
from gguf_embed.corpus import chunk_spans
from gguf_embed.corpus.backends import token_counter
from gguf_embed.corpus.spec import JobSpec
from gguf_embed.errors import InvalidInputError
from gguf_embed.server import create_app
from gguf_embed.text.late import join_chunks
from tools.models.multilingual import XLMR_VOCAB, build_tiny_xlmr, xlmr_tokenizer_json
from tools.texts import VARIED_TEXTS

from .helpers import RunningServer, cos

torch.set_num_threads(1)

BERLIN = ("Berlin is the capital and largest city of Germany, both by area and by population. "
          "Its more than 3.85 million inhabitants make it the European Union's most populous city. "
          "The city is also one of the states of Germany, and the third smallest state in the country by area.")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    cuts = [m.end() for m in re.finditer(r"[.!?] ", text)]
    starts = [0, *cuts]
    ends = [c - 1 for c in cuts] + [len(text)]
    return list(zip(starts, ends))


def long_document(n: int = 40) -> str:
    return " ".join(f"Sentence {i} is about {w}." for i, w in zip(range(n), ["rivers", "cities", "music", "trains",
                                                                             "maths", "bread", "stars", "ships"] * n))


def st_states(st, text: str, prompt: str = ""):
    """sentence-transformers' token states of one framed pass over ``prompt + text``, the offsets
    (into ``text``) of its tokens, and how many tokens the frame and prompt put before the text."""
    enc = st.tokenizer(prompt + text, return_offsets_mapping=True, return_tensors="pt")
    offsets = [(a - len(prompt), b - len(prompt)) for a, b in enc.pop("offset_mapping")[0].tolist()]
    feats = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        states = st[0].forward(feats)["token_embeddings"][0].numpy()
    n_head = next(i for i, (a, b) in enumerate(offsets) if b > 0 and a >= 0 and i > 0)
    return states, offsets, n_head


def reference(st, text: str, spans, limit: int, prompt: str = "") -> np.ndarray:
    """The expected unnormalised chunk vectors, from sentence-transformers: passes of whole
    chunks under ``limit`` tokens (the whole document when it fits); each chunk the mean of the
    text tokens overlapping its characters, its pass's leading frame and prompt with its first
    chunk, the closing special token with its last."""
    def n_tokens(a: int, b: int) -> int:
        return len(st.tokenizer(prompt + text[a:b])["input_ids"])

    groups, i = [], 0
    if n_tokens(0, len(text)) <= limit:
        groups, i = [(0, len(text), list(range(len(spans))))], len(spans)
    while i < len(spans):
        j = i + 1
        while j < len(spans) and n_tokens(spans[i][0], spans[j][1]) <= limit:
            j += 1
        groups.append((spans[i][0], spans[j - 1][1], list(range(i, j))))
        i = j
    out: np.ndarray | None = None
    for a, b, members in groups:
        states, offsets, n_head = st_states(st, text[a:b], prompt)
        n = len(offsets)
        for c in members:
            s, e = spans[c][0] - a, spans[c][1] - a
            idx = [k for k, (x, y) in enumerate(offsets) if n_head <= k < n - 1 and x < e and y > s]
            if c == members[0]:
                idx = list(range(n_head)) + idx
            if c == members[-1]:
                idx = idx + [n - 1]
            out = np.zeros((len(spans), states.shape[1])) if out is None else out
            out[c] = states[idx].mean(0)
    return out


def counter(emb, input_type=None):
    return token_counter(emb, JobSpec(input_type=input_type))


# --- the Python API against sentence-transformers ---------------------------------------------


def test_chunks_are_span_means_of_one_pass(minilm_embedder, st_minilm):
    spans = sentence_spans(BERLIN)
    got = minilm_embedder.embed_late_chunks(BERLIN, spans, normalize=False)
    ref = reference(st_minilm, BERLIN, spans, minilm_embedder.max_tokens)
    assert len(spans) == 3 and cos(got.embeddings, ref).min() >= 0.9999
    assert got.total_tokens == len(minilm_embedder.tokenize([BERLIN])[0])  # each token pooled once
    normed = minilm_embedder.embed_late_chunks(BERLIN, spans).embeddings
    assert np.allclose(np.linalg.norm(normed, axis=1), 1, atol=1e-5) and cos(normed, ref).min() >= 0.9999
    # the context reaches every chunk: not the vectors of the chunks embedded alone
    alone = minilm_embedder.embed([BERLIN[a:b] for a, b in spans]).embeddings
    assert cos(normed, alone).min() < 0.999
    # one chunk that is the whole document is its ordinary vector
    whole = minilm_embedder.embed_late_chunks(BERLIN, [(0, len(BERLIN))]).embeddings
    assert cos(whole, minilm_embedder.embed([BERLIN]).embeddings).min() >= 0.99999


def test_long_document_runs_in_passes_cut_at_chunks(minilm_embedder, st_minilm):
    text = long_document(60)
    limit = minilm_embedder.max_tokens
    assert len(minilm_embedder.tokenize([text], truncate="end")[0]) == limit  # longer than one pass
    spans = chunk_spans(text, counter(minilm_embedder), 48, 8)
    plan = minilm_embedder.plan_late(text, spans)
    assert len(plan.windows) >= 2 and max(len(w) for w in plan.windows) <= limit
    got = minilm_embedder.embed_late_chunks(text, spans, normalize=False).embeddings
    assert cos(got, reference(st_minilm, text, spans, limit)).min() >= 0.9999


def test_accents_and_a_word_cut_inside(minilm_embedder, st_minilm):
    """Cuts that do not fall between tokens: the straddling token pools with both chunks."""
    text = "Café crème in Zürich, naïve façade. " + "Supercalifragilisticexpialidocious " * 2 + "the end."
    a = text.index("Super") + 8
    spans = [(0, a), (a, len(text))]
    got = minilm_embedder.embed_late_chunks(text, spans, normalize=False).embeddings
    assert cos(got, reference(st_minilm, text, spans, minilm_embedder.max_tokens)).min() >= 0.9999


def test_spans_are_checked(minilm_embedder):
    for spans, why in [([(0, 5), (3, 2)], "span 1"), ([(0, 999)], "outside"), ([(5, 9), (0, 3)], "document order"),
                       ([], "no spans"), ([("a", 3)], "not a (start, end) pair")]:
        with pytest.raises(InvalidInputError, match=re.escape(why)):
            minilm_embedder.embed_late_chunks(BERLIN, spans)


@pytest.mark.quick
def test_join_chunks():
    text, spans = join_chunks(["One.", "Two ", "three", "\nfour"])
    assert text == "One. Two three\nfour" and [text[a:b] for a, b in spans] == ["One.", "Two ", "three", "\nfour"]


def test_refused_for_last_token_models(qwen_embedder, tmp_path):
    with pytest.raises(InvalidInputError, match="late chunking needs a mean- or CLS-pooled encoder"):
        qwen_embedder.embed_late_chunks(BERLIN, sentence_spans(BERLIN))
    src = tmp_path / "in.txt"
    src.write_text(BERLIN + "\n")
    res = CliRunner().invoke(main, ["encode", str(src), "-m", str(qwen_embedder.info.path), "-q", "--threads", "1",
                                    "--chunk-tokens", "16", "--late-chunking", "--no-cache"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and "last token" in res.output, res.output


# --- a tiny XLM-R (SentencePiece, CLS pooling, a document prompt) -------------------------------


@pytest.mark.skipif(not XLMR_VOCAB.is_file(), reason=f"{XLMR_VOCAB} is missing (make install-test extracts it)")
def test_xlmr_with_a_prompt(tmp_path_factory):
    from sentence_transformers import SentenceTransformer

    from gguf_embed.convert import convert_model

    src = build_tiny_xlmr(tmp_path_factory.mktemp("late-xlmr") / "tiny-xlmr", xlmr_tokenizer_json(), pooling="cls")
    gguf = convert_model(str(src), tmp_path_factory.mktemp("late-xlmr-gguf") / "x.gguf", "F32").path
    st = SentenceTransformer(str(src), device="cpu")
    text = " ".join(t.replace("\n", " ") for t in VARIED_TEXTS[:6])
    with Embedder(gguf, n_threads=1) as emb:
        prompt = emb.prompt_for("query", None)
        assert prompt  # the E5 layout's query prefix: pooled with the first chunk, never a chunk's own
        spans = chunk_spans(text, counter(emb, "query"), 24)
        got = emb.embed_late_chunks(text, spans, input_type="query", normalize=False).embeddings
        ref = reference(st, text, spans, emb.max_tokens, prompt)
        assert len(spans) > 3 and cos(got, ref).min() >= 0.9999


# --- corpus jobs ------------------------------------------------------------------------------


def encode(*args):
    res = CliRunner().invoke(main, ["encode", *map(str, args), "-q", "--threads", "1"])
    assert res.exit_code == 0, res.output
    return res


def test_cli_rows_spans_manifest_and_cache(tmp_path, minilm_embedder):
    model = minilm_embedder.info.path
    docs = [{"id": "berlin", "text": BERLIN}, {"id": "long", "text": long_document(30)}, {"id": "short", "text": "Hi."},
            {"id": "berlin-again", "text": BERLIN}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    cache = tmp_path / "c.db"
    opts = ["-m", model, "--chunk-tokens", "32", "--chunk-overlap", "4", "--cache", cache]
    encode(src, *opts, "-o", tmp_path / "plain.parquet")
    encode(src, *opts, "--late-chunking", "-o", tmp_path / "late.parquet")
    encode(src, *opts, "--late-chunking", "-o", tmp_path / "late.jsonl")
    plain, late = (pq.read_table(tmp_path / f"{n}.parquet").to_pydict() for n in ("plain", "late"))
    for k in ("id", "chunk", "start", "end"):
        assert late[k] == plain[k]  # the same rows and spans as ordinary chunking
    lines = [json.loads(x) for x in (tmp_path / "late.jsonl").read_text().splitlines()]
    assert [(r["id"], r["chunk"], r["start"], r["end"]) for r in lines] == list(
        zip(late["id"], late["chunk"], late["start"], late["end"]))
    texts = {d["id"]: d["text"] for d in docs}
    for doc_id in texts:
        rows = [i for i, x in enumerate(late["id"]) if x == doc_id]
        spans = [(late["start"][i], late["end"][i]) for i in rows]
        expect = minilm_embedder.embed_late_chunks(texts[doc_id], spans).embeddings
        assert cos(np.array([late["embedding"][i] for i in rows]), expect).min() >= 0.99999
        assert cos(np.array([lines[i]["embedding"] for i in rows]), expect).min() >= 0.99999
    multi = [i for i, x in enumerate(late["id"]) if x == "berlin"]
    assert len(multi) > 1 and cos(np.array([late["embedding"][i] for i in multi]),
                                  np.array([plain["embedding"][i] for i in multi])).min() < 0.999
    man = json.loads((tmp_path / "late.parquet.manifest.json").read_text())
    assert man["late_chunking"] is True and man["chunk_tokens"] == 32 and man["embedded"] > 0
    assert man["duplicates"] > 0  # berlin-again: its chunks are keyed by the document and span, embedded once
    assert json.loads((tmp_path / "plain.parquet.manifest.json").read_text())["late_chunking"] is False
    again = json.loads((tmp_path / "late.jsonl.manifest.json").read_text())
    assert again["embedded"] == 0 and again["reused"] == man["embedded"]  # the second late run: all cached


def test_cli_late_chunking_needs_chunks(tmp_path, minilm_embedder):
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    model = str(minilm_embedder.info.path)
    res = CliRunner().invoke(main, ["encode", str(src), "-m", model, "--late-chunking"])
    assert res.exit_code != 0 and "--late-chunking needs --chunk-tokens" in res.output
    res = CliRunner().invoke(main, ["encode", str(src), "-m", model, "--late-chunking", "--chunk-tokens", "16",
                                    "--ray", "local", "--no-cache", "-q"])
    assert res.exit_code != 0 and "does not run on Ray yet" in res.output and "Traceback" not in res.output


# --- HTTP -------------------------------------------------------------------------------------


def test_http_late_chunking_flag(minilm_embedder, qwen_embedder):
    chunks = [BERLIN[a:b] for a, b in sentence_spans(BERLIN)]
    with RunningServer(create_app([minilm_embedder, qwen_embedder])) as srv:
        srv.wait_ready()
        url = srv.url + "/v1/embeddings"
        r = httpx.post(url, json={"model": minilm_embedder.name, "input": chunks, "late_chunking": True}, timeout=60)
        assert r.status_code == 200, r.text
        got = np.array([d["embedding"] for d in r.json()["data"]])
        expect = minilm_embedder.embed_late_chunks(*join_chunks(chunks))
        assert got.shape[0] == 3 and cos(got, expect.embeddings).min() >= 0.99999
        assert r.json()["usage"]["prompt_tokens"] == expect.total_tokens
        plain = httpx.post(url, json={"model": minilm_embedder.name, "input": chunks}, timeout=60).json()
        assert cos(got, np.array([d["embedding"] for d in plain["data"]])).min() < 0.999
        for body, status, why in [
            ({"model": qwen_embedder.name, "input": chunks, "late_chunking": True}, 400, "last token"),
            ({"model": minilm_embedder.name, "input": [[101, 2000]], "late_chunking": True}, 400, "token ids"),
            ({"model": minilm_embedder.name, "input": chunks, "late_chunking": "yes"}, 400, "true or false"),
            ({"model": minilm_embedder.name, "input": ["word " * 600], "late_chunking": True}, 400, "limit"),
        ]:
            r = httpx.post(url, json=body, timeout=60)
            assert r.status_code == status and why in r.json()["error"]["message"], r.text


# --- the pass planning on its own (one token per word) ----------------------------------------


@pytest.mark.quick
def test_passes_cut_at_chunk_boundaries():
    from gguf_embed.text.late import plan_late

    words = [f"w{i}" for i in range(40)]
    text = " ".join(words)
    starts = [text.index(w + " ") if w != words[-1] else text.rindex(w) for w in words]

    def tok(s: str) -> np.ndarray:
        return np.array([int(w[1:]) + 10 for w in s.split()], dtype=np.int32)

    def span(i: int, j: int) -> tuple[int, int]:  # words i..j-1
        return starts[i], starts[j - 1] + len(words[j - 1])

    spans = [span(0, 6), span(4, 12), span(10, 18), span(16, 30), span(30, 40)]
    plan = plan_late(tok, text, spans, prompt="", prefix=np.array([1]), suffix=np.array([2]), limit=16)
    assert all(len(w) <= 16 and w[0] == 1 and w[-1] == 2 for w in plan.windows)
    # passes of whole chunks: [0..12) (chunks 0, 1), [10..18) (chunk 2), chunk 3 (14 words) alone, chunk 4 alone
    assert [w[1:-1].tolist() for w in plan.windows] == [
        list(range(10, 22)), list(range(20, 28)), list(range(26, 40)), list(range(40, 50))]
    got = [(w, plan.windows[w][rows].tolist()) for w, rows in plan.chunks]
    assert got[0] == (0, [1, *range(10, 16)])  # [CLS] with the pass's first chunk
    assert got[1] == (0, [*range(14, 22), 2])  # [SEP] with its last
    assert got[2] == (1, [1, *range(20, 28), 2])
    assert got[3][0] == 2 and got[4][0] == 3
    # a chunk longer than a pass is cut to one pass
    plan = plan_late(tok, text, [span(0, 40)], prompt="", prefix=np.array([1]), suffix=np.array([2]), limit=16)
    assert [w.tolist() for w in plan.windows] == [[1, *range(10, 24), 2]]

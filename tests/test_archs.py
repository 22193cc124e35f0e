"""nomic-bert, gemma-embedding and modern-bert files made by llama.cpp's own converter, embedded with no
extra flags, against sentence-transformers in fp32 (references computed here): documents, queries, and
documents longer than a batch; the architecture table; one clear line for a file gguf-embed cannot
vouch for (an EmbeddingGemma without its Dense layers, an architecture it does not know).

The models are tiny random ones around real tokenizers (see ``tools/models/archs.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from gguf_embed import Embedder  # noqa: E402
from gguf_embed.cli import main  # noqa: E402
from gguf_embed.model import archs  # noqa: E402

from .helpers import cos  # noqa: E402
from tools.models.archs import (  # noqa: E402
    build_embeddinggemma, build_modernbert_embed, build_nomic_bert, with_architecture,
)
from tools.models.llama_converter import converter_dir, llama_convert  # noqa: E402
from tools.texts import VARIED_TEXTS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONVERTER = converter_dir(REPO / ".cache")
needs_converter = pytest.mark.skipif(CONVERTER is None, reason="llama.cpp's converter is not in .cache/llama-cpp")

# beside the varied texts: Hindi and Bengali (spacing vowel signs, which llama.cpp's WordPiece drops) and
# text in decomposed form (ModernBERT's tokenizer composes it to NFC, llama.cpp's BPE does not)
TEXTS = list(VARIED_TEXTS) + ["नमस्ते, यह एक परीक्षण वाक्य है।", "আমি বাংলায় গান গাই।",
                              "Cafe\u0301 au lait and nai\u0308ve re\u0301sume\u0301s."]
LONG = [" ".join(t.replace("\n", " ").strip() for t in VARIED_TEXTS[i:i + 12]) for i in range(0, 36, 6)]  # 140-310 tokens
SMALL_BATCH = 64  # tokens per llama.cpp batch: every LONG text is longer
MIN_COS = 0.9999

# GGUF architecture -> (builder, folder / file stem, the family, llama.cpp converter flags)
MODELS = {
    "nomic-bert": (build_nomic_bert, "nomic-embed-text-tiny", "nomic-embed-text", ()),
    "modern-bert": (build_modernbert_embed, "modernbert-embed-tiny", "modernbert-embed", ()),
    "gemma-embedding": (build_embeddinggemma, "embeddinggemma-tiny", "embeddinggemma",
                        ("--sentence-transformers-dense-modules",)),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``get(arch, dense=True)``: (HF folder, llama.cpp's f32 GGUF of it), each made once."""
    work = tmp_path_factory.mktemp("archs")
    cache: dict = {}

    def get(arch: str, dense: bool = True) -> tuple[Path, Path]:
        build, stem, _, flags = MODELS[arch]
        if arch not in cache:
            cache[arch] = build(work / stem)
        key = (arch, dense)
        if key not in cache:
            name = f"{stem}-f32.gguf" if dense else f"{stem}-nodense-f32.gguf"
            cache[key] = llama_convert(cache[arch], work / name, "f32", converter=CONVERTER,
                                       extra_args=flags if dense else ())
        return cache[arch], cache[key]

    return get


@pytest.fixture(scope="module", params=list(MODELS))
def case(request, built):
    """(architecture, GGUF, sentence-transformers' vectors of documents, queries and long documents)."""
    from sentence_transformers import SentenceTransformer

    if CONVERTER is None:
        pytest.skip("llama.cpp's converter is not in .cache/llama-cpp")
    src, path = built(request.param)
    st = SentenceTransformer(str(src), device="cpu")
    ref = {"document": st.encode(TEXTS, prompt_name="document", normalize_embeddings=True),
           "query": st.encode(TEXTS, prompt_name="query", normalize_embeddings=True),
           "long": st.encode(LONG, prompt_name="document", normalize_embeddings=True)}
    return request.param, path, ref


def test_the_table_follows_llama_cpp():
    """Causal attention as llama.cpp decides it; every encoder keeps an input in one batch."""
    for name in ("bert", "nomic-bert", "nomic-bert-moe", "gemma-embedding", "modern-bert", "jina-bert-v2",
                 "jina-bert-v3", "neo-bert", "eurobert"):
        row = archs.arch(name)
        assert archs.known(name) and not row.causal and row.one_batch and row.rank_token == "cls", name
    assert archs.arch("neo-bert").default_pooling == "cls"
    assert archs.arch("gemma-embedding").causal_fixed  # llama.cpp forces it, whatever the file says
    for name in ("qwen3", "qwen2", "qwen3moe"):
        row = archs.arch(name)
        assert row.causal and not row.one_batch and row.default_pooling == "last", name
    assert not archs.arch("t5encoder").runs
    unknown = archs.arch("gemma3")
    assert not archs.known("gemma3") and unknown.causal and unknown.default_pooling == "mean"


@needs_converter
def test_llama_cpp_file_matches_sentence_transformers(case):
    arch, path, ref = case
    with Embedder(path, batch_tokens=SMALL_BATCH) as emb:
        info = emb.info
        assert (info.arch, info.family, info.causal, info.one_batch, info.warnings) == \
            (arch, MODELS[arch][2], False, True, ())
        assert emb.batch_tokens >= info.max_tokens  # an input is never split, whatever was asked
        docs = emb.embed(TEXTS).embeddings
        queries = emb.embed(TEXTS, input_type="query").embeddings
        lengths = [len(s) for s in emb.tokenize(LONG)]
        long = emb.embed(LONG).embeddings
    assert min(lengths) > SMALL_BATCH
    for what, got in (("document", docs), ("query", queries), ("long", long)):
        c = cos(got, ref[what])
        assert c.min() >= MIN_COS, (arch, what, float(c.min()), (TEXTS if what != "long" else LONG)[int(c.argmin())])


@needs_converter
def test_cli_encode_with_no_flags(case, tmp_path):
    """``gguf-embed encode FILE`` and ``--input-type query``, as a new user runs them."""
    arch, path, ref = case
    runner = CliRunner()
    src = tmp_path / "in.txt"
    src.write_text("\n".join(LONG) + "\n", encoding="utf-8")
    res = runner.invoke(main, ["encode", str(src), "-m", str(path), "--no-cache", "-q"])
    assert res.exit_code == 0, res.output
    got = np.array([json.loads(line)["embedding"] for line in res.stdout.splitlines()])
    assert cos(got, ref["long"]).min() >= MIN_COS, arch
    some = [t for t in TEXTS[:30] if "\n" not in t and t == t.strip()]
    res = runner.invoke(main, ["encode", "-", "-m", str(path), "--no-cache", "-q", "--input-type", "query"],
                        input="\n".join(some) + "\n")
    assert res.exit_code == 0, res.output
    got = np.array([json.loads(line)["embedding"] for line in res.stdout.splitlines()])
    assert cos(got, ref["query"][[TEXTS.index(t) for t in some]]).min() >= MIN_COS, arch


@needs_converter
def test_inspect_names_the_family_and_its_values(case):
    arch, path, _ = case
    res = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    family = MODELS[arch][2]
    assert report["family"] == family and report["causal"] is False and report["warnings"] == []
    assert report["prompts"]["source"] == f"family {family}" and set(report["prompts"]["value"]) == {"query", "document"}
    assert "prompts" in report["supplied_by_gguf_embed"]


@needs_converter
def test_wordpiece_fixes_reach_nomic_bert(built):
    """nomic-bert's uncased WordPiece gets BERT's normaliser and Hugging Face's WordPiece where llama.cpp's
    differs (the Hindi and Bengali texts), as BERT files do."""
    _, path = built("nomic-bert")
    with Embedder(path) as emb:
        assert emb.info.text_normalizer == "nfd_strip_lower" and emb.info.sources["text_normalizer"] == \
            "family nomic-embed-text"
        assert emb.session._wordpiece is not None
        assert (emb.info.matryoshka_min, emb.info.max_tokens) == (64, 2048)


@needs_converter
def test_embeddinggemma_without_dense_layers_says_so(built, capsys):
    """llama.cpp's converter leaves out EmbeddingGemma's Dense layers unless asked: one line, naming the flag,
    in inspect and when the file is loaded."""
    _, path = built("gemma-embedding", dense=False)
    res = CliRunner().invoke(main, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "--sentence-transformers-dense-modules" in lines[0] and "dense_2" in lines[0]
    capsys.readouterr()
    with Embedder(path) as emb:
        emb.embed(["one", "two"])
        emb.embed(["three"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gguf-embed:")]
    assert len(err) == 1 and "--sentence-transformers-dense-modules" in err[0]


@needs_converter
def test_unknown_architecture_says_what_was_assumed(built, tmp_path, capsys):
    """A file of an architecture llama.cpp runs but the table does not know (here: gemma3, a decoder)."""
    _, nodense = built("gemma-embedding", dense=False)
    path = with_architecture(nodense, tmp_path / "gemma3-tiny.gguf", "gemma3")
    res = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["architecture"] == "gemma3" and report["causal"] is True
    assert len(report["warnings"]) == 1 and "'gemma3' is not one gguf-embed knows" in report["warnings"][0]
    assert "assumed a decoder" in report["warnings"][0] and "mean pooling" in report["warnings"][0]
    capsys.readouterr()
    with Embedder(path) as emb:
        assert emb.embed(["hello world", "a longer second text"]).embeddings.shape == (2, 64)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gguf-embed:")]
    assert err == [f"gguf-embed: {report['warnings'][0]}"]

"""gguf-embed's own conversions of nomic-bert, gemma-embedding (with its Dense layers) and modern-bert
models, loaded by llama.cpp through the Embedder with no extra flags, against sentence-transformers in
fp32 (references computed here): documents, queries and documents longer than a batch, as F32, F16,
Q8_0 and Q4_K_M; what the files say about themselves; the command line; what the converter refuses.

The models are the tiny random ones of ``test_archs`` (``tools/models/archs.py``). F32 and F16 must give
cos >= 0.9999. The quantised types get the looser bounds below: on these random 64-wide models Q8_0's
rounding costs up to ~1e-3 in cosine (min 0.9990 measured, nomic-bert queries) and Q4_K_M's up to ~4e-2
(min 0.963); a wrong tensor, prompt or norm costs far more (cos 0.15-0.8, see
``docs/benchmarks/agreement.md``). ``-s`` prints the min / mean per architecture, type and input kind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from gguf_embed import Embedder  # noqa: E402
from gguf_embed.cli import main  # noqa: E402
from gguf_embed.convert import convert_model  # noqa: E402
from gguf_embed.errors import ConversionError  # noqa: E402

from .helpers import cos  # noqa: E402
from .test_archs import LONG, MIN_COS, MODELS, SMALL_BATCH, TEXTS  # noqa: E402

BOUNDS = {"F32": MIN_COS, "F16": MIN_COS, "Q8_0": 0.998, "Q4_K_M": 0.95}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("convert-archs")


@pytest.fixture(scope="module")
def source(work):
    """``get(arch)``: (HF folder, sentence-transformers' vectors of documents, queries, long documents)."""
    from sentence_transformers import SentenceTransformer

    cache: dict = {}

    def get(arch: str):
        if arch not in cache:
            build, stem, _, _ = MODELS[arch]
            folder = build(work / stem)
            st = SentenceTransformer(str(folder), device="cpu")
            cache[arch] = folder, {
                "document": st.encode(TEXTS, prompt_name="document", normalize_embeddings=True),
                "query": st.encode(TEXTS, prompt_name="query", normalize_embeddings=True),
                "long": st.encode(LONG, prompt_name="document", normalize_embeddings=True)}
        return cache[arch]

    return get


@pytest.fixture(scope="module")
def converted(source, work):
    """``get(arch, quant)``: gguf-embed's conversion of the tiny model, made once."""
    cache: dict = {}

    def get(arch: str, quant: str) -> Path:
        if (arch, quant) not in cache:
            out = work / f"{MODELS[arch][1]}-{quant}.gguf"
            cache[arch, quant] = convert_model(source(arch)[0], out, quant).path
        return cache[arch, quant]

    return get


@pytest.mark.parametrize("quant", list(BOUNDS))
@pytest.mark.parametrize("arch", list(MODELS))
def test_conversion_matches_sentence_transformers(arch, quant, source, converted):
    _, ref = source(arch)
    path = converted(arch, quant)
    with Embedder(path, batch_tokens=SMALL_BATCH) as emb:
        info = emb.info
        assert (info.arch, info.family, info.causal, info.one_batch, info.warnings) == \
            (arch, MODELS[arch][2], False, True, ())
        assert info.sources["prompts"] == "file"  # written by the converter, not filled in by the family
        docs = emb.embed(TEXTS).embeddings
        queries = emb.embed(TEXTS, input_type="query").embeddings
        assert min(len(s) for s in emb.tokenize(LONG)) > SMALL_BATCH
        long = emb.embed(LONG).embeddings
    measured = {what: cos(got, ref[what]) for what, got in (("document", docs), ("query", queries), ("long", long))}
    print(f"\n{arch} {quant}: " + ", ".join(f"{w} min {c.min():.6f} mean {c.mean():.6f}" for w, c in measured.items()))
    for what, c in measured.items():
        assert c.min() >= BOUNDS[quant], (arch, quant, what, float(c.min()))


def test_cli_convert_and_inspect(source, work):
    """``gguf-embed convert FOLDER -o out.gguf``, then ``inspect``: the file's own prompts, normaliser, limits."""
    folder, _ = source("gemma-embedding")
    out = work / "cli" / "embeddinggemma.gguf"
    res = CliRunner().invoke(main, ["convert", str(folder), "-o", str(out), "--quant", "F16"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["inspect", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["architecture"] == "gemma-embedding" and report["warnings"] == []
    assert report["prompts"]["source"] == "file" and set(report["prompts"]["value"]) == {"query", "document"}
    assert report["family"] == "embeddinggemma"


def test_file_keys_follow_llama_cpp(converted):
    """The hyperparameters llama.cpp reads for each architecture, as its converter writes them."""
    import gguf

    expect = {
        "nomic-bert": {"nomic-bert.context_length": 2048, "nomic-bert.rope.freq_base": 1000.0,
                       "tokenizer.ggml.model": "bert", "tokenizer.ggml.normalizer.lowercase": True},
        "modern-bert": {"modern-bert.attention.sliding_window": 16, "modern-bert.attention.sliding_window_pattern": 3,
                        "modern-bert.rope.freq_base": 160000.0, "modern-bert.rope.freq_base_swa": 10000.0,
                        "modern-bert.hidden_activation": "gelu", "tokenizer.ggml.pre": "modern-bert"},
        "gemma-embedding": {"gemma-embedding.attention.sliding_window": 8, "gemma-embedding.dense_2_feat_out": 128,
                            "gemma-embedding.dense_3_feat_in": 128, "tokenizer.ggml.model": "llama",
                            "tokenizer.ggml.add_space_prefix": False},
    }
    for arch, want in expect.items():
        reader = gguf.GGUFReader(converted(arch, "F32"))
        got = {k: reader.fields[k].contents() for k in want if k in reader.fields}
        assert got == pytest.approx(want), arch
    names = {t.name for t in gguf.GGUFReader(converted("gemma-embedding", "F32")).tensors}
    assert {"dense_2.weight", "dense_3.weight"} <= names


def test_refusals(source, work):
    """What llama.cpp's graphs do not compute is refused before any output exists."""
    folder, _ = source("gemma-embedding")
    bad = work / "gemma-dense-bias"
    shutil.copytree(folder, bad)
    cfg = json.loads((bad / "2_Dense" / "config.json").read_text())
    (bad / "2_Dense" / "config.json").write_text(json.dumps({**cfg, "activation_function": "torch.nn.Tanh"}))
    with pytest.raises(ConversionError, match="bias-free linear map"):
        convert_model(bad, work / "bad.gguf", "F32")
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "use_bidirectional_attention": False}))
    with pytest.raises(ConversionError, match="bidirectional"):
        convert_model(bad, work / "bad.gguf", "F32")
    folder, _ = source("nomic-bert")
    moe = work / "nomic-moe"
    shutil.copytree(folder, moe)
    config = json.loads((moe / "config.json").read_text())
    (moe / "config.json").write_text(json.dumps({**config, "moe_every_n_layers": 2}))
    with pytest.raises(ConversionError, match="nomic-bert-moe"):
        convert_model(moe, work / "bad.gguf", "F32")
    assert not (work / "bad.gguf").exists()


NEW_ENTRIES = ("nomic-embed-text-v1.5", "embeddinggemma-300m", "gte-modernbert-base", "modernbert-embed-base",
               "mxbai-embed-large-v1", "snowflake-arctic-embed-l-v2.0", "granite-embedding-english-r2",
               "granite-embedding-small-english-r2", "granite-embedding-278m-multilingual",
               "granite-embedding-107m-multilingual", "granite-embedding-30m-english")


def test_models_lists_the_new_entries():
    """Each entry has a licence, an architecture the converter writes, and its family's prompts."""
    from gguf_embed.convert import SUPPORTED_ARCHS
    from gguf_embed.registry import load_registry

    res = CliRunner().invoke(main, ["models"])
    assert res.exit_code == 0, res.output
    registry = load_registry()
    for name in NEW_ENTRIES:
        assert name in res.stdout, name
        entry = registry.get(name)
        assert entry.license and entry.architecture in SUPPORTED_ARCHS, name
    assert registry.get("embeddinggemma-300m").prompts == registry.families["embeddinggemma"].prompts
    assert registry.get("nomic-embed-text-v1.5").gguf.repo == "nomic-ai/nomic-embed-text-v1.5-GGUF"

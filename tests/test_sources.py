"""Getting GGUFs the way users do: ``hf:`` downloads (against a fake Hub on 127.0.0.1, through the
real huggingface-hub client), ``gguf-embed pull``, Ollama's store, LM Studio's folder and
``gguf-embed models --local``. Nothing here reaches the network."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
from click.testing import CliRunner

from gguf_embed import Embedder
from gguf_embed.cli import main
from gguf_embed.engine.settings import RuntimeSettings
from gguf_embed.errors import GGUFEmbedError, ModelLoadError, ModelNotFoundError
from gguf_embed.model.info import resolve_model
from gguf_embed.registry import load_registry

from .fake_hub import FakeHub, sha256_of
from .helpers import cos

TEXTS = ["The cat sat on the mat.", "Paris is the capital of France.", "GGUF files hold quantised weights."]


@pytest.fixture(scope="module")
def gguf(minilm_gguf) -> Path:
    return minilm_gguf("F16")


@pytest.fixture(scope="module")
def gguf_sha(gguf) -> str:
    return sha256_of(gguf)


@pytest.fixture()
def hub(monkeypatch):
    """The fake Hub, with huggingface-hub pointed at it and out of the suite's offline mode."""
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        yield fake


@pytest.fixture()
def models(tmp_path) -> Path:
    return tmp_path / "models"


def place(src: Path, dest: Path) -> Path:
    """``src`` at ``dest`` without copying 45 MB where a hard link will do."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy(src, dest)
    return dest


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_hf_file_downloads_checked_and_reused_offline(hub, models, gguf, gguf_sha, minilm_embedder):
    hub.add("acme/MiniLM-GGUF", "all-MiniLM-L6-v2-F16.gguf", gguf)
    spec = "hf:acme/MiniLM-GGUF/all-MiniLM-L6-v2-F16.gguf"
    path = resolve_model(spec, models_dir=models)
    assert path == models / "hf" / "acme" / "MiniLM-GGUF" / "all-MiniLM-L6-v2-F16.gguf"
    assert sha256_of(path) == gguf_sha
    assert leftovers(models) == ["all-MiniLM-L6-v2-F16.gguf"]  # no partial, no lock left behind
    calls = [(m, p) for m, p, _ in hub.requests]
    assert calls == [("GET", "/api/models/acme/MiniLM-GGUF/revision/main"),
                     ("GET", "/acme/MiniLM-GGUF/resolve/main/all-MiniLM-L6-v2-F16.gguf")]

    hub.stop()  # from now on any request would fail
    assert resolve_model(spec, models_dir=models) == path
    with Embedder(spec, settings=RuntimeSettings.of(models_dir=models)) as emb:
        got = emb.embed(TEXTS).embeddings
    assert cos(got, minilm_embedder.embed(TEXTS).embeddings).min() >= 0.99999
    assert len(hub.requests) == 2


def test_hf_quant_tag_picks_one_file(hub, models, gguf):
    for name in ("m-Q8_0.gguf", "m-f16.gguf", "m-bf16.gguf", "m-Q4_K_M.gguf", "m-Q4_K_M-imat.gguf", "m-Q4_K_S.gguf"):
        hub.add("acme/m-GGUF", name, gguf)
    folder = models / "hf" / "acme" / "m-GGUF"
    assert resolve_model("hf:acme/m-GGUF:q8_0", models_dir=models) == folder / "m-Q8_0.gguf"
    assert resolve_model("hf:acme/m-GGUF:F16", models_dir=models) == folder / "m-f16.gguf"  # not m-bf16
    assert leftovers(models) == ["m-Q8_0.gguf", "m-f16.gguf"]  # only what was asked for
    with pytest.raises(ModelNotFoundError) as many:
        resolve_model("hf:acme/m-GGUF:Q4_K_M", models_dir=models)
    assert "several" in one_line(many) and "m-Q4_K_M.gguf" in str(many.value) and "m-Q4_K_M-imat.gguf" in str(many.value)
    for tag in ("Q2_K", "Q4_K"):  # a tag matches whole: Q4_K is not Q4_K_M or Q4_K_S
        with pytest.raises(ModelNotFoundError) as none:
            resolve_model(f"hf:acme/m-GGUF:{tag}", models_dir=models)
        assert f"no GGUF file for {tag}" in one_line(none) and "m-bf16.gguf" in str(none.value)
    with pytest.raises(ModelNotFoundError) as untagged:
        resolve_model("hf:acme/m-GGUF", models_dir=models)
    assert "has several GGUF files" in one_line(untagged)
    for part in ("s-Q8_0-00001-of-00002.gguf", "s-Q8_0-00002-of-00002.gguf"):  # a split model counts as one
        hub.add("acme/s-GGUF", part, gguf)
    first = models / "hf" / "acme" / "s-GGUF" / "s-Q8_0-00001-of-00002.gguf"
    assert resolve_model("hf:acme/s-GGUF:Q8_0", models_dir=models) == first
    assert (first.parent / "s-Q8_0-00002-of-00002.gguf").is_file()
    hub.stop()
    assert resolve_model("hf:acme/m-GGUF:Q8_0", models_dir=models) == folder / "m-Q8_0.gguf"  # offline
    assert resolve_model("hf:acme/s-GGUF", models_dir=models) == first


def test_hf_wrong_sha256_is_refused_and_leaves_nothing(hub, models, gguf, tmp_path):
    hub.add("acme/bad-GGUF", "bad.gguf", gguf, sha256="0" * 64)
    with pytest.raises(ModelLoadError) as bad:
        resolve_model("hf:acme/bad-GGUF/bad.gguf", models_dir=models)
    assert "sha256" in one_line(bad) and "nothing was installed" in str(bad.value)
    assert leftovers(models) == []
    src = tmp_path / "in.txt"
    src.write_text("hello\n")
    result = CliRunner().invoke(main, ["encode", str(src), "-m", "hf:acme/bad-GGUF/bad.gguf", "--models-dir", str(models)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and "sha256" in result.output


def test_hf_resumes_a_partial_download_and_reads_the_etag(hub, models, gguf, gguf_sha):
    """A file listed without LFS metadata gets its sha256 from the HEAD's ETag; the bytes an earlier,
    interrupted call left in the hidden .partial are kept and only the rest is asked for."""
    hub.add("acme/r-GGUF", "r.gguf", gguf, lfs=False)
    folder = models / "hf" / "acme" / "r-GGUF"
    folder.mkdir(parents=True)
    half = gguf.stat().st_size // 2
    partial = folder / f".r.gguf.{gguf_sha[:16]}.partial"
    partial.write_bytes(gguf.read_bytes()[:half])
    path = resolve_model("hf:acme/r-GGUF/r.gguf", models_dir=models)
    assert sha256_of(path) == gguf_sha and not partial.exists()
    methods = [m for m, _, _ in hub.requests]
    assert methods == ["GET", "HEAD", "GET"]
    assert hub.requests[-1][2].get("Range") == f"bytes={half}-"


def test_hf_failures_are_one_line(hub, models, gguf, monkeypatch):
    hub.add("acme/x-GGUF", "x-Q8_0.gguf", gguf)
    with pytest.raises(ModelNotFoundError) as repo:
        resolve_model("hf:acme/nope-GGUF:Q8_0", models_dir=models)
    assert "no Hugging Face repo acme/nope-GGUF" in one_line(repo)
    with pytest.raises(ModelNotFoundError) as file:
        resolve_model("hf:acme/x-GGUF/y.gguf", models_dir=models)
    assert "has no file y.gguf (it has: x-Q8_0.gguf)" in one_line(file)
    with pytest.raises(ModelNotFoundError) as spec:
        resolve_model("hf:acme", models_dir=models)
    assert "hf:OWNER/REPO:QUANT" in one_line(spec)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as offline:
        resolve_model("hf:acme/x-GGUF:Q8_0", models_dir=models)
    assert "HF_HUB_OFFLINE" in one_line(offline)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub.stop()
    with pytest.raises(ModelLoadError) as down:
        resolve_model("hf:acme/x-GGUF:Q8_0", models_dir=models)
    assert "cannot list the files of acme/x-GGUF" in one_line(down)
    assert leftovers(models) == []


def test_pull_through_the_cli(hub, models, gguf, tmp_path, monkeypatch):
    runner = CliRunner()
    hub.add("Qwen/Qwen3-Embedding-0.6B-GGUF", "Qwen3-Embedding-0.6B-Q8_0.gguf", gguf)
    hub.add("Qwen/Qwen3-Embedding-0.6B-GGUF", "Qwen3-Embedding-0.6B-f16.gguf", gguf)
    hub.add("giladgd/Qwen3-Reranker-0.6B-GGUF", "Qwen3-Reranker-0.6B.Q8_0.gguf", gguf)
    folder = models / "hf" / "Qwen" / "Qwen3-Embedding-0.6B-GGUF"

    ok = runner.invoke(main, ["pull", "qwen3-embedding-0.6b", "--models-dir", str(models)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip() == str(folder / "Qwen3-Embedding-0.6B-Q8_0.gguf")
    assert resolve_model("qwen3-embedding-0.6b", models_dir=models) == folder / "Qwen3-Embedding-0.6B-Q8_0.gguf"
    f16 = runner.invoke(main, ["pull", "qwen3-embedding-0.6b", "--quant", "f16", "--models-dir", str(models)])
    assert f16.exit_code == 0 and f16.stdout.strip() == str(folder / "Qwen3-Embedding-0.6B-f16.gguf")
    rr = runner.invoke(main, ["pull", "qwen3-reranker-0.6b", "--models-dir", str(models)])  # picked by its tag
    assert rr.exit_code == 0 and rr.stdout.strip().endswith("giladgd/Qwen3-Reranker-0.6B-GGUF/Qwen3-Reranker-0.6B.Q8_0.gguf")

    convert = runner.invoke(main, ["pull", "bge-small-en-v1.5", "--models-dir", str(models)])
    assert convert.exit_code != 0 and len(convert.output.strip().splitlines()) == 1
    assert "gguf-embed convert bge-small-en-v1.5" in convert.output
    with pytest.raises(ModelNotFoundError) as hint:
        resolve_model("qwen3-embedding-4b", models_dir=models)
    assert "gguf-embed pull qwen3-embedding-4b" in one_line(hint) and "gguf-embed convert qwen3-embedding-4b" in str(hint.value)

    # a registry of one's own: a file name the repo lacks falls back to the quantisation's tag
    toml = tmp_path / "models.toml"
    toml.write_text('default = "x"\n[models.x]\nhub_id = "acme/x"\narchitecture = "bert"\npooling = "mean"\n'
                    'dims = 384\nmax_tokens = 256\ndefault_quant = "Q8_0"\nlicense = "mit"\n'
                    'gguf = { repo = "acme/x-GGUF", files = { Q8_0 = "renamed.gguf" } }\n')
    hub.add("acme/x-GGUF", "x.Q8_0.gguf", gguf)
    monkeypatch.setattr("gguf_embed.registry._default_registry_path", lambda: toml)
    own = runner.invoke(main, ["pull", "x", "--models-dir", str(models)])
    assert own.exit_code == 0, own.output
    assert own.stdout.strip() == str(models / "hf" / "acme" / "x-GGUF" / "x.Q8_0.gguf")


def test_registry_gguf_table_is_validated(tmp_path):
    reg = load_registry()
    g = reg.get("qwen3-embedding-0.6b").gguf
    assert g.repo == "Qwen/Qwen3-Embedding-0.6B-GGUF"
    assert g.hf_spec("q8_0") == "hf:Qwen/Qwen3-Embedding-0.6B-GGUF/Qwen3-Embedding-0.6B-Q8_0.gguf"
    assert g.hf_spec("F16") == "hf:Qwen/Qwen3-Embedding-0.6B-GGUF/Qwen3-Embedding-0.6B-f16.gguf"
    assert g.hf_spec("Q4_K_M") == "hf:Qwen/Qwen3-Embedding-0.6B-GGUF:Q4_K_M"
    for name in ("qwen3-embedding-4b", "qwen3-embedding-8b", "qwen3-reranker-0.6b", "qwen3-reranker-4b", "qwen3-reranker-8b"):
        assert reg.get(name).gguf is not None
    assert reg.get("bge-small-en-v1.5").gguf is None
    head = ('[models.x]\nhub_id="a/b"\narchitecture="bert"\npooling="mean"\ndims=3\nmax_tokens=5\n'
            'default_quant="F16"\nlicense="mit"\n')
    bad = tmp_path / "m.toml"
    for table, error in [('{ repo = "nope" }', "OWNER/REPO"), ('{ repo = "a/b", file = "x.gguf" }', "unknown keys file"),
                         ('{ repo = "a/b", files = { Q8_0 = "x.bin" } }', "must be a .gguf file"),
                         ('{ repo = "a/b", files = { "Q8 0" = "x.gguf" } }', "not a quantisation tag"),
                         ('"a/b"', "must be a table")]:
        bad.write_text(head + f"gguf = {table}\n")
        with pytest.raises(GGUFEmbedError, match=error):
            load_registry(bad)


# --- Ollama and LM Studio ---------------------------------------------------------------


def build_ollama_store(root: Path, gguf: Path, sha: str) -> Path:
    """A store laid out as Ollama writes it: blobs named by their sha256, one manifest per NAME/TAG."""
    blob = place(gguf, root / "blobs" / f"sha256-{sha}")
    config = b'{"model_format":"gguf","model_family":"bert","file_type":"F16"}'
    template = b"{{ .Prompt }}"
    digests = {}
    for data in (config, template):
        digests[data] = hashlib.sha256(data).hexdigest()
        (root / "blobs" / f"sha256-{digests[data]}").write_bytes(data)

    def manifest(*where: str, model_digest: str = sha) -> None:
        doc = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                          "digest": f"sha256:{digests[config]}", "size": len(config)},
               "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{model_digest}",
                           "size": blob.stat().st_size},
                          {"mediaType": "application/vnd.ollama.image.template",
                           "digest": f"sha256:{digests[template]}", "size": len(template)}]}
        path = root / "manifests" / Path(*where)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))

    manifest("registry.ollama.ai", "library", "minilm", "latest")
    manifest("registry.ollama.ai", "acme", "minilm", "v1")
    manifest("hf.co", "acme", "MiniLM-GGUF", "F16")
    manifest("registry.ollama.ai", "library", "not-gguf", "latest", model_digest=digests[template])
    return blob


def test_ollama_store_is_read_in_place(tmp_path, monkeypatch, gguf, gguf_sha, minilm_embedder):
    root = tmp_path / "ollama"
    blob = build_ollama_store(root, gguf, gguf_sha)
    monkeypatch.setenv("OLLAMA_MODELS", str(root))
    for spec in ("ollama:minilm", "ollama:minilm:latest", "ollama:acme/minilm:v1", "ollama:hf.co/acme/MiniLM-GGUF:F16"):
        assert resolve_model(spec) == blob
    with Embedder("ollama:minilm") as emb:
        assert emb.session.info.path == blob
        assert cos(emb.embed(TEXTS).embeddings, minilm_embedder.embed(TEXTS).embeddings).min() >= 0.99999
    from gguf_embed.engine import planning

    assert planning.resolve_for_plan("ollama:minilm", None)[1] == blob

    with pytest.raises(ModelNotFoundError) as missing:
        resolve_model("ollama:nomic-embed-text")
    msg = one_line(missing)
    assert "ollama pull nomic-embed-text:latest" in msg and "minilm:latest" in msg and "acme/minilm:v1" in msg
    with pytest.raises(ModelLoadError) as other:
        resolve_model("ollama:not-gguf")
    assert "not a GGUF model" in one_line(other)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFoundError, match="it has no models"):
        resolve_model("ollama:minilm")


def test_models_local_lists_models_dir_lm_studio_and_ollama(tmp_path, monkeypatch, gguf, gguf_sha):
    home, models = tmp_path / "home", tmp_path / "models"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("OLLAMA_MODELS", str(home / ".ollama" / "models"))
    blob = build_ollama_store(home / ".ollama" / "models", gguf, gguf_sha)
    lms = place(gguf, home / ".lmstudio" / "models" / "acme" / "MiniLM-GGUF" / "MiniLM-F16.gguf")
    old = place(gguf, home / ".cache" / "lm-studio" / "models" / "old" / "x-GGUF" / "x.gguf")
    converted = place(gguf, models / "all-minilm-l6-v2-F16.gguf")
    pulled = place(gguf, models / "hf" / "acme" / "r-GGUF" / "r-F16.gguf")
    (models / "hf" / "acme" / "r-GGUF" / ".r2.gguf.0123.partial").write_bytes(b"GGUF")
    (models / "broken.gguf").write_bytes(b"not a gguf")

    result = CliRunner().invoke(main, ["models", "--local", "--json", "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {str(converted), "hf:acme/r-GGUF/r-F16.gguf", str(lms), str(old), "ollama:minilm:latest",
                         "ollama:acme/minilm:v1", "ollama:hf.co/acme/MiniLM-GGUF:F16"}
    assert rows["hf:acme/r-GGUF/r-F16.gguf"]["path"] == str(pulled)
    assert rows["ollama:minilm:latest"]["path"] == str(blob) and rows[str(lms)]["source"] == "lmstudio"
    for r in rows.values():
        assert (r["arch"], r["task"], r["pooling"], r["quant"]) == ("bert", "embed", "mean", "F16")
        assert r["size"] == gguf.stat().st_size
    # every name is what -m takes
    for name in rows:
        assert resolve_model(name, models_dir=models).samefile(rows[name]["path"])

    table = CliRunner().invoke(main, ["models", "--local", "--models-dir", str(models)])
    assert table.exit_code == 0 and "ollama:minilm:latest" in table.stdout and "lmstudio" in table.stdout


def test_ray_fetch_model_goes_through_the_resolver(hub, models, gguf):
    from gguf_embed.ray import fetch_model

    hub.add("acme/MiniLM-GGUF", "m-F16.gguf", gguf)
    path = fetch_model("hf:acme/MiniLM-GGUF:F16", models_dir=str(models))
    assert path == models / "hf" / "acme" / "MiniLM-GGUF" / "m-F16.gguf"

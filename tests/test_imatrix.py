"""Importance-weighted quantisation: the importance matrix (llama.cpp's imatrix GGUF), collected while
the model embeds texts, checked against a transformers forward pass; files quantised with it."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from click.testing import CliRunner

from gguf_embed import Embedder
from gguf_embed.cli import main
from gguf_embed.convert import convert_model
from gguf_embed.convert.imatrix import calibrate, read_imatrix, write_imatrix
from gguf_embed.errors import ConversionError

from tools.texts import VARIED_TEXTS

CAL = VARIED_TEXTS[:24]


def weight_matrices(path) -> dict[str, tuple[int, ...]]:
    """The model's blk.* 2-D weights: name -> GGUF dims (row length first)."""
    r = gguf.GGUFReader(str(path))
    return {t.name: tuple(int(d) for d in t.shape) for t in r.tensors
            if t.name.startswith("blk.") and t.name.endswith(".weight") and len(t.shape) == 2}


@pytest.fixture(scope="module")
def qwen_imatrix(tiny_qwen_gguf, tmp_path_factory):
    path = tmp_path_factory.mktemp("imatrix") / "tiny-qwen3.imatrix.gguf"
    im = calibrate(tiny_qwen_gguf("F32"), CAL, dataset="varied", threads=1)
    return write_imatrix(path, im), im


def test_the_file_is_llama_cpps_imatrix_format(qwen_imatrix, tiny_qwen_gguf):
    path, im = qwen_imatrix
    r = gguf.GGUFReader(str(path))
    assert r.get_field("general.type").contents() == "imatrix"
    assert r.get_field("imatrix.datasets").contents() == ["varied"]
    assert r.get_field("imatrix.chunk_count").contents() == im.chunk_count == 2 * len(CAL)  # documents and queries
    assert r.get_field("imatrix.chunk_size").contents() >= 1
    tensors = {t.name: t for t in r.tensors}
    mats = weight_matrices(tiny_qwen_gguf("F32"))
    assert {n.rsplit(".", 1)[0] for n in tensors} == set(mats)  # every layer matrix, nothing else (no LM head)
    assert all(f"{n}.in_sum2" in tensors and f"{n}.counts" in tensors for n in mats)
    for name, dims in mats.items():
        sums, counts = tensors[f"{name}.in_sum2"], tensors[f"{name}.counts"]
        assert sums.tensor_type == counts.tensor_type == gguf.GGMLQuantizationType.F32
        assert [int(d) for d in sums.shape] == [dims[0], 1] and [int(d) for d in counts.shape] == [1, 1]
        assert float(counts.data.ravel()[0]) == im.importance.tokens > 0
        assert np.all(np.asarray(sums.data) > 0)
    back = read_imatrix(path)
    assert set(back.importance.sums) == set(mats) and back.datasets == ("varied",)


def test_sums_equal_the_inputs_squared_in_transformers(qwen_imatrix, tiny_qwen_gguf, st_tiny_qwen):
    """The first layer's q projection and the last layer's down projection: the squares of their
    inputs in a transformers fp32 forward pass over the same token ids (every token, queries too)."""
    import torch

    _, im = qwen_imatrix
    hf = st_tiny_qwen[0].auto_model
    last = len(hf.layers) - 1
    seen: dict[str, torch.Tensor] = {}

    def hook(name):
        def add(_module, args):
            x = args[0].detach().double().reshape(-1, args[0].shape[-1])
            seen[name] = seen.get(name, 0) + (x * x).sum(0)
        return add

    hf.layers[0].self_attn.q_proj.register_forward_pre_hook(hook("blk.0.attn_q.weight"))
    hf.layers[last].mlp.down_proj.register_forward_pre_hook(hook(f"blk.{last}.ffn_down.weight"))
    with Embedder(tiny_qwen_gguf("F32")) as emb:
        seqs = emb.tokenize(CAL, input_type="document", truncate="end") + emb.tokenize(CAL, input_type="query",
                                                                                      truncate="end")
    with torch.no_grad():
        for ids in seqs:
            hf(input_ids=torch.tensor(ids[None, :], dtype=torch.long))
    n_tokens = sum(len(s) for s in seqs)
    for name, ref in seen.items():
        ours = im.importance.sums[name].ravel()
        assert im.importance.counts[name] == n_tokens
        rel = np.abs(ours - ref.numpy()).max() / ref.numpy().max()
        assert rel < 2e-3, (name, rel)  # the last layer's inputs went through llama.cpp's F16 KV cache


@pytest.fixture(scope="module")
def minilm_quants(minilm_src, tmp_path_factory):
    """all-MiniLM-L6-v2 at Q4_K_M without and with importance weights from a small calibration file."""
    folder = tmp_path_factory.mktemp("minilm-imatrix")
    cal = folder / "cal.txt"
    cal.write_text("\n".join(CAL) + "\n", encoding="utf-8")
    plain = convert_model(str(minilm_src), folder / "plain.gguf", "Q4_K_M", threads=2).path
    weighted = convert_model(str(minilm_src), folder / "weighted.gguf", "Q4_K_M", threads=2, imatrix="auto",
                             calibration=cal).path
    f32 = convert_model(str(minilm_src), folder / "f32.gguf", "F32").path
    return plain, weighted, f32, cal


def test_weighted_file_records_it_loads_and_embeds(minilm_quants):
    plain, weighted, _, cal = minilm_quants
    r = gguf.GGUFReader(str(weighted))
    meta = {k: f.contents() for k, f in r.fields.items() if "imatrix" in k}
    assert meta["quantize.imatrix.file"] == "auto"
    assert meta["quantize.imatrix.dataset"] == str(cal)
    assert meta["quantize.imatrix.entries_count"] == len(weight_matrices(weighted))
    assert meta["quantize.imatrix.chunks_count"] == len(CAL)  # MiniLM has no query prompt: documents only
    assert meta["gguf_embed.imatrix.tokens"] > len(CAL)
    assert not any("imatrix" in k for k in gguf.GGUFReader(str(plain)).fields)
    assert {t.name: t.tensor_type for t in r.tensors} == {t.name: t.tensor_type for t in gguf.GGUFReader(str(plain)).tensors}
    texts = VARIED_TEXTS[24:]
    with Embedder(plain) as a, Embedder(weighted) as b:
        cos = (a.embed(texts).embeddings * b.embed(texts).embeddings).sum(1)
    assert cos.min() > 0.97


def test_importance_weights_lower_the_weighted_error(minilm_quants):
    """What the quantiser minimises: each weight's error weighted by its column's mean squared input,
    summed over the layer matrices, is lower in the importance-weighted file (dequantised by gguf-py)."""
    plain, weighted, f32, _ = minilm_quants
    im = calibrate(f32, CAL, threads=1).importance.mean_squares()
    tensors = [{t.name: t for t in gguf.GGUFReader(str(p)).tensors} for p in (f32, plain, weighted)]
    errs = np.zeros(2)
    for name, imp in im.items():
        ref = np.asarray(tensors[0][name].data, dtype=np.float64)
        for i, q in enumerate(tensors[1:]):
            t = q[name]
            deq = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref.shape)
            errs[i] += float((imp[None, :] * (deq - ref) ** 2).sum() / imp.sum())
    assert errs[1] < 0.9 * errs[0], errs


def test_cli_imatrix_then_convert_with_the_file(tmp_path, minilm_quants, qwen_imatrix):
    _, _, f32, cal = minilm_quants
    runner = CliRunner()
    out = tmp_path / "m.imatrix.gguf"
    res = runner.invoke(main, ["imatrix", str(f32), "-o", str(out), "--calibration", str(cal), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert set(read_imatrix(out).importance.sums) == set(weight_matrices(f32))
    res = runner.invoke(main, ["convert", "all-minilm-l6-v2", "-q", "Q4_K_M", "--imatrix", str(out),
                               "-o", str(tmp_path / "q.gguf"), "--threads", "2"])
    assert res.exit_code == 0, res.output
    meta = gguf.GGUFReader(str(tmp_path / "q.gguf")).get_field("quantize.imatrix.file").contents()
    assert meta == "m.imatrix.gguf"


@pytest.mark.parametrize("case", ["direct", "missing", "not-imatrix", "other-model", "calibration-alone",
                                  "required", "no-texts"])
def test_cli_errors_are_one_line(case, tmp_path, qwen_imatrix, tiny_qwen_gguf):
    (tmp_path / "empty.txt").write_text("\n\n")
    args, expect = {
        "direct": (["-q", "F16", "--imatrix", "auto"], "is not quantised"),
        "missing": (["-q", "Q4_K_M", "--imatrix", str(tmp_path / "nope.gguf")], "does not exist"),
        "not-imatrix": (["-q", "Q4_K_M", "--imatrix", str(tiny_qwen_gguf("F32"))], "is not an importance matrix"),
        "other-model": (["-q", "Q4_K_M", "--imatrix", str(qwen_imatrix[0])], "computed on another model"),
        "calibration-alone": (["-q", "Q4_K_M", "--calibration", str(tmp_path / "empty.txt")], "use them together"),
        "required": (["-q", "IQ3_XXS"], "only with an importance matrix"),
        "no-texts": (["-q", "Q4_K_M", "--imatrix", "auto", "--calibration", str(tmp_path / "empty.txt")],
                     "no texts"),
    }[case]
    out = tmp_path / "out.gguf"
    res = CliRunner().invoke(main, ["convert", "all-minilm-l6-v2", "-o", str(out), *args])
    assert res.exit_code != 0
    assert expect in res.output, res.output
    lines = [line for line in res.output.strip().splitlines() if not line.startswith("converting ")]  # the bar
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_imatrix_command_errors_are_one_line(tmp_path):
    res = CliRunner().invoke(main, ["imatrix", str(tmp_path / "none.gguf"), "-o", str(tmp_path / "x.gguf")])
    assert res.exit_code != 0 and len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    with pytest.raises(ConversionError, match="not a GGUF importance matrix|is not an importance matrix"):
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(b"GGUF" + b"\0" * 8)
        read_imatrix(bad)

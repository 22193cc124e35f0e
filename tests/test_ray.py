"""Ray Data: the map_batches adapter and `encode --ray` on a local 2-CPU cluster, against in-process results."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gguf_embed.cli import main
from tools.texts import VARIED_TEXTS

from .helpers import cos

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_embed_dataset_matches_in_process(local_ray, tiny_qwen_gguf, qwen_embedder):
    from gguf_embed.ray import embed_dataset

    texts = [t.splitlines()[0] for t in VARIED_TEXTS[:24]]
    ds = ray.data.from_items([{"key": i, "text": t} for i, t in enumerate(texts)])
    out = embed_dataset(ds, str(tiny_qwen_gguf("F32")), text_column="text", concurrency=2, batch_size=8,
                        input_type="query", dimensions=32).take_all()
    got = {row["key"]: np.asarray(row["embedding"]) for row in out}
    expect = qwen_embedder.embed(texts, input_type="query", dimensions=32).embeddings
    assert sorted(got) == list(range(len(texts)))
    # batches of 8 on the actors vs one batch of 24 here: compared by cosine, not element-wise
    assert cos(np.stack([got[i] for i in range(len(texts))]), expect).min() >= 0.99999
    assert {int(row["tokens"]) for row in out} <= {len(s) for s in qwen_embedder.tokenize(texts, input_type="query")}


def test_encode_on_ray_equals_in_process(local_ray, tmp_path, tiny_qwen_gguf):
    model = str(tiny_qwen_gguf("F32"))
    rows = [{"id": f"r{i}", "text": f"{VARIED_TEXTS[i % len(VARIED_TEXTS)]} #{i}"} for i in range(300)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    on_ray, local = tmp_path / "ray.parquet", tmp_path / "local.parquet"
    res = runner.invoke(main, ["encode", str(src), "-m", model, "-o", str(on_ray), "-q", "--cache",
                               str(tmp_path / "ray.db"), "--ray", "local", "--ray-workers", "2", "--threads", "1",
                               "--commit-every", "64"])  # five windows, one pool of actors
    assert res.exit_code == 0, res.output
    assert runner.invoke(main, ["encode", str(src), "-m", model, "-o", str(local), "-q", "--no-cache"]).exit_code == 0
    a, b = pq.read_table(on_ray), pq.read_table(local)
    assert a.column("id").to_pylist() == b.column("id").to_pylist() == [r["id"] for r in rows]
    va = np.array(a.column("embedding").to_pylist(), dtype=np.float32)
    vb = np.array(b.column("embedding").to_pylist(), dtype=np.float32)
    assert ((va * vb).sum(1)).min() >= 0.99999
    m = json.loads((tmp_path / "ray.parquet.manifest.json").read_text())
    assert (m["count"], m["embedded"], m["reused"]) == (300, 300, 0) and m["ray"]["workers"] == 2
    again = runner.invoke(main, ["encode", str(src), "-m", model, "-o", str(on_ray), "-q", "--cache",
                                 str(tmp_path / "ray.db"), "--ray", "local", "--ray-workers", "2"])
    assert again.exit_code == 0 and json.loads((tmp_path / "ray.parquet.manifest.json").read_text())["reused"] == 300

"""Ray Data integration (``pip install 'gguf-embed[ray]'``).

    import ray
    from gguf_embed.ray import embed_dataset

    ds = ray.data.read_parquet("s3://bucket/docs/")
    out = embed_dataset(ds, "qwen3-embedding-0.6b", text_column="text", concurrency=4, num_gpus=1)
    out.write_parquet("s3://bucket/vectors/")

``EmbedBatch`` is the callable class ``Dataset.map_batches`` constructs once per actor
(``gguf_embed.corpus.ray_actors``, where a corpus job's Ray backend lives too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .corpus.ray_actors import EmbedBatch, RayBackend, fetch_model, ray_encoder, ray_module  # noqa: F401 - RayBackend: its type
from .engine.settings import RuntimeSettings

if TYPE_CHECKING:  # pragma: no cover
    import ray.data

__all__ = ["EmbedBatch", "embed_dataset", "fetch_model", "ray_encoder"]  # RayBackend: what ray_encoder returns


def embed_dataset(ds: "ray.data.Dataset", model: str, *, text_column: str = "text", output_column: str = "embedding",
                  concurrency: int = 1, num_gpus: float = 0, num_cpus: float | None = None, batch_size: int = 256,
                  models_dir: str | None = None, n_threads: int | None = None, local_path: str | None = None,
                  expected_sha256: str | None = None, embedder_kwargs: dict | None = None,
                  settings: RuntimeSettings | None = None, **options) -> "ray.data.Dataset":
    """``ds`` with an ``output_column`` of vectors and a ``tokens`` column, embedded by ``concurrency`` actors.

    ``options``: input_type, instruction, dimensions, normalize, truncate (as ``Embedder.embed``).
    Each actor reserves ``num_cpus`` (default: ``n_threads`` or 1) and ``num_gpus``.
    """
    ray = ray_module()
    cpus = num_cpus if num_cpus is not None else float(n_threads or 1)
    threads = n_threads or (max(1, int(num_cpus)) if num_cpus else None)  # None: every core of the node
    ctor = dict(model=str(model), text_column=text_column, output_column=output_column, models_dir=models_dir,
                local_path=local_path, expected_sha256=expected_sha256, n_threads=threads,
                embedder_kwargs=embedder_kwargs, settings=settings, **options)
    return ds.map_batches(EmbedBatch, fn_constructor_kwargs=ctor, batch_size=batch_size, batch_format="numpy",
                          compute=ray.data.ActorPoolStrategy(size=int(concurrency)), num_cpus=cpus,
                          num_gpus=num_gpus or None)

"""What bge-m3's extra outputs cost, on the same GGUF, texts and thread count.

    python bench/bench_m3.py --gguf all-minilm-l6-v2-F16.gguf [--texts 2000] [--threads 1]
    python bench/bench_m3.py --gguf tiny-bge-m3-F32.gguf --outputs dense,sparse,colbert

1. speed: ``Embedder.embed(texts)`` (pooled rows only) against ``Embedder.embed(texts, outputs=...)``
   (every token's state copied out, then the heads in numpy), runs interleaved, median of 3.
2. heads as metadata: llama.cpp's model load time of the GGUF as it is against a copy with one more
   float32 metadata array of 1024 x 1024 values (bge-m3's ColBERT head is that size), median of 5.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from common import interleaved, parser


def texts(n: int) -> list[str]:
    from gguf_embed.quality import texts as multilingual

    base = multilingual.texts()
    return [f"{base[i % len(base)]} ({i})" for i in range(n)]


def speed(path: Path, docs: list[str], outputs: tuple[str, ...], threads: int) -> None:
    from gguf_embed import Embedder

    with Embedder(path, n_threads=threads) as emb:
        emb.embed(docs[:32])
        t = interleaved({"dense": lambda: emb.embed(docs), "multi": lambda: emb.embed(docs, outputs=outputs)}, 3)
    d, m = t["dense"].median, t["multi"].median
    print(f"{len(docs)} texts, {threads} thread(s): embed {d:.2f} s; embed(outputs={','.join(outputs)}) {m:.2f} s "
          f"({m / d:.2f}x)")


def with_padding(path: Path, dest: Path, kind: str, n: int = 1024 * 1024) -> None:
    """A copy of ``path`` with ``n`` more float32 values in its metadata (llama.cpp ignores them): a float32
    array (``kind`` "array") or one string of their little-endian bytes in base64 ("base64")."""
    import gguf
    import numpy as np

    from gguf_embed.engine import llama  # noqa: F401  (the same libraries as the run)

    reader = gguf.GGUFReader(str(path))
    writer = gguf.GGUFWriter(str(dest), arch=str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8"))
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            vals = [str(bytes(field.parts[i]), "utf-8") if sub == gguf.GGUFValueType.STRING else field.parts[i][0]
                    for i in field.data]
            writer.add_key_value(field.name, vals, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(field.name, str(bytes(field.parts[-1]), "utf-8"), vtype)
        else:
            writer.add_key_value(field.name, field.parts[-1][0], vtype)
    values = np.random.default_rng(0).standard_normal(n).astype("<f4")
    if kind is None:  # the same copy without the values: the baseline
        pass
    elif kind == "array":
        writer.add_array("gguf_embed.bench.padding", values.tolist())
    else:
        import base64

        writer.add_string("gguf_embed.bench.padding", base64.b64encode(values.tobytes()).decode("ascii"))
    for t in reader.tensors:
        writer.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed(t.shape.tolist())), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def load_time(path: Path) -> float:
    from gguf_embed.engine import llama

    times = []
    for _ in range(5):
        t = time.perf_counter()
        with llama.capture_log():
            model = llama.Model(path, n_gpu_layers=0)
        times.append(time.perf_counter() - t)
        model.close()
    return statistics.median(times)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--outputs", default="dense,tokens")
    ap.add_argument("--skip", default="", help="speed,metadata")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if "speed" not in skip:
        speed(args.gguf, texts(args.texts), tuple(args.outputs.split(",")), args.threads)
    if "metadata" not in skip:
        with tempfile.TemporaryDirectory() as d:
            base = Path(d) / "copy.gguf"
            with_padding(args.gguf, base, None)
            plain = load_time(base)
        print(f"llama.cpp model load of a copy of {args.gguf.name}: {plain:.3f} s")
        for kind in ("array", "base64"):
            with tempfile.TemporaryDirectory() as d:
                padded = Path(d) / "padded.gguf"
                with_padding(args.gguf, padded, kind)
                more = load_time(padded)
                grown = (os.path.getsize(padded) - os.path.getsize(args.gguf)) / 2**20  # vs the original
                t = time.perf_counter()
                from gguf_embed.model.gguf_file import read_gguf

                read_gguf(padded).meta
                ours = time.perf_counter() - t
                print(f"  with 1024x1024 float32 values as a {kind} metadata value (+{grown:.1f} MiB): {more:.3f} s "
                      f"(+{more - plain:.3f} s); gguf-embed's header reader {ours:.3f} s")


if __name__ == "__main__":
    main()

"""``gguf-embed convert``: a Hugging Face model to GGUF."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from .. import choices
from ..registry import default_models_dir, load_registry
from .common import progress_bar, stderr, user_errors


@click.command("convert")
@click.argument("src")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output .gguf (default: MODELS_DIR/NAME-QUANT.gguf).")
@click.option("-q", "--quant", type=click.Choice(choices.QUANT_CHOICES, case_sensitive=False),
              help="Tensor type; auto: the fastest lossless type here (BF16 with AVX512-BF16, else F16). "
                   "Default: the registry's, else F16.")
@click.option("--pooling", type=click.Choice(choices.POOLINGS), help="Override the pooling read from the model files.")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Token limit to record in the GGUF.")
@click.option("--matryoshka-min", type=click.IntRange(min=1), help="Smallest Matryoshka dimension the model supports.")
@click.option("--allow-pickle", is_flag=True, help="Read pickle (pytorch_model.bin) weights. Only for files you trust.")
@click.option("--task", type=click.Choice(choices.TASKS), help="Force the model's task (default: from the model files).")
@click.option("--models-dir", type=click.Path(path_type=Path), help="Where converted GGUFs live.")
@click.option("--threads", type=click.IntRange(min=1), help="Threads for quantisation.")
@click.option("--imatrix", "imatrix", metavar="auto|FILE",
              help="Quantise with importance weights: 'auto' computes them here by embedding calibration texts; "
                   "FILE is an importance matrix GGUF (gguf-embed imatrix, or llama.cpp's llama-imatrix).")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path),
              help="With --imatrix auto: the texts to calibrate on, one per line (default: the built-in set).")
@click.option("--mix", type=click.Choice(choices.QUANT_MIXES),
              help="Tensor mixture of a quantised file: embedding (token embeddings at the layers' type, more bits "
                   "for attn_v and ffn_down in every layer; the default for embedding models) or llama "
                   "(llama.cpp's own; the default for rerankers).")
@click.option("-v", "--verbose", is_flag=True, help="Log every tensor and llama.cpp's own output.")
def convert_cmd(src, output, quant, pooling, max_tokens, matryoshka_min, allow_pickle, task, models_dir, threads,
                imatrix, calibration, mix, verbose):
    """Convert a Hugging Face model (folder, models.toml name or Hub repo id) to GGUF."""
    from ..convert import convert_model
    from ..engine import llama
    from ..engine.machine import resolve_quant

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("gguf").setLevel(logging.INFO if verbose else logging.ERROR)
    llama.set_verbose(verbose)
    with user_errors():
        reg = load_registry()
        entry = reg.models.get(src)
        asked = quant or (entry.default_quant if entry else "F16")
        quant, why = resolve_quant(asked)
        if why:
            stderr.print(f"--quant auto: {why}")
        if output is None:
            stem = entry.name if entry else Path(src.rstrip("/")).name
            output = (models_dir or default_models_dir()) / f"{stem}-{quant}.gguf"
        with progress_bar(f"converting {src}", quiet=False) as bar:
            result = convert_model(
                src, output, asked, registry=reg, pooling=pooling, max_tokens=max_tokens,
                matryoshka_min=matryoshka_min, allow_pickle=allow_pickle, threads=threads, progress=bar, task=task,
                imatrix=imatrix, calibration=calibration, mix=mix,
            )
    how = f", importance-weighted ({imatrix})" if imatrix else ""
    stderr.print(f"wrote {result.path} ({result.quant}{how}, {result.size_bytes / 2**20:.1f} MiB)")
    click.echo(str(result.path))

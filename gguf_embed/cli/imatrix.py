"""``gguf-embed imatrix``: the importance matrix of a GGUF's weights, from embedding calibration texts."""

from __future__ import annotations

from pathlib import Path

import click

from .common import stderr, user_errors

__all__ = ["imatrix_cmd"]


@click.command("imatrix")
@click.argument("model")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The importance matrix GGUF to write (llama.cpp's imatrix format).")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path),
              help="Texts to calibrate on, one per line (default: the built-in multilingual and English set).")
@click.option("--threads", type=click.IntRange(min=1), help="llama.cpp threads.")
def imatrix_cmd(model, output, calibration, threads):
    """Embed calibration texts with MODEL (a GGUF path or name, ideally F16/F32) as documents and as
    queries, and write each weight matrix's input importance for `convert --imatrix FILE` or
    `llama-quantize --imatrix FILE`."""
    from ..convert import calibration_file
    from ..convert.imatrix import calibrate, write_imatrix

    with user_errors():
        texts = calibration_file(calibration) if calibration is not None else None
        im = calibrate(model, texts, dataset=str(calibration) if calibration is not None else None, threads=threads)
        write_imatrix(output, im)
    imp = im.importance
    stderr.print(f"wrote {output}: {len(imp.sums)} weight matrices, {im.chunk_count} sequences, {imp.tokens} tokens")
    click.echo(str(output))

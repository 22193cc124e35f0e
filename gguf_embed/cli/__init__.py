"""The ``gguf-embed`` command: argv in, text and files out. Each sub-command parses its
options, makes one library call and prints; no model logic here."""

from __future__ import annotations

import click

from .cache import cache_cmd
from .convert import convert_cmd
from .doctor import doctor_cmd
from .encode import encode_cmd
from .imatrix import imatrix_cmd
from .eval import eval_cmd
from .inspect import inspect_cmd
from .models import models_cmd
from .plan import plan_cmd
from .pull import pull_cmd
from .rerank import rerank_cmd
from .search import search_cmd
from .serve import serve_cmd
from .tokenize import tokenize_cmd

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gguf-embed")
def main() -> None:
    """Quantised GGUF text-embedding models on llama.cpp: pull or convert, encode, serve."""


for _command in (models_cmd, pull_cmd, convert_cmd, inspect_cmd, plan_cmd, serve_cmd, rerank_cmd, tokenize_cmd,
                 eval_cmd, encode_cmd, search_cmd, imatrix_cmd, cache_cmd, doctor_cmd):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()

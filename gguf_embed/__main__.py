"""``python -m gguf_embed``: the same as the ``gguf-embed`` command."""

from .cli import main

main()

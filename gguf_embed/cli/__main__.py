"""``python -m gguf_embed.cli``: the same as the ``gguf-embed`` command."""

from . import main

main()

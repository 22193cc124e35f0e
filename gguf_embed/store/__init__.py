"""The content-addressed vector store shared by corpus jobs, the server and Ray actors.

- ``cache``: one SQLite file of vectors keyed by (space, sha256 of the text); model file hashes.
- ``space``: what keys a space (``VectorSpec`` -> the parameters of ``VectorCache.space``).
- ``lookup``: look up, then embed the missing texts through a backend, committing each batch.
- ``codes``: int8/uint8 ranges fixed per model and the compressed vectors made with them.
"""

from .cache import Space, VectorCache, default_cache_path, remembered_sha256, sha256_file, text_key
from .lookup import Backend, Batch, embed_missing
from .space import VectorSpec, space_params, vector_params

__all__ = ["Backend", "Batch", "Space", "VectorCache", "VectorSpec", "default_cache_path", "embed_missing",
           "remembered_sha256", "sha256_file", "space_params", "text_key", "vector_params"]

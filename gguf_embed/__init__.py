"""gguf-embed: quantised GGUF text-embedding models on llama.cpp.

    from gguf_embed import Embedder
    emb = Embedder("all-minilm-l6-v2")           # or a path to a .gguf
    vecs = emb.embed(["hello", "world"]).embeddings   # float32 (2, 384), L2-normalised
"""

from .convert import convert_model
from .embedder import Embedder, EmbedResult
from .engine.settings import RuntimeSettings  # noqa: F401 - Embedder(model, settings=RuntimeSettings(...))
from .errors import (
    ConversionError,
    GGUFEmbedError,
    InputTooLongError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
)
from .model.info import ModelInfo
from .registry import ModelEntry, Registry, load_registry
from .reranker import Reranker

__version__ = "0.1.0"

__all__ = [
    "Embedder",
    "EmbedResult",
    "Reranker",
    "ModelInfo",
    "ModelEntry",
    "Registry",
    "load_registry",
    "convert_model",
    "GGUFEmbedError",
    "InvalidInputError",
    "InputTooLongError",
    "ModelNotFoundError",
    "ModelLoadError",
    "ConversionError",
]


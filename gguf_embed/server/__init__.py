"""The laptop-local HTTP server: OpenAI's ``/v1/embeddings``, Jina/Cohere/TEI rerank routes.

``create_app(models, ...)`` (``app``) builds it; each model gets a ``Worker`` (``worker``:
prepare -> scheduler -> finish, and the vector cache); ``embeddings`` and ``rerank`` parse
requests and shape responses; ``metrics`` renders Prometheus text.
"""

from .app import create_app

__all__ = ["create_app"]

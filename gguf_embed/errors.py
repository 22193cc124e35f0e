"""One small exception tree for everything a user can cause.

Each error kind carries the HTTP status and OpenAI error ``type`` it maps to,
so the CLI and the server never have to inspect messages.
"""

from __future__ import annotations

__all__ = [
    "GGUFEmbedError",
    "InvalidInputError",
    "InputTooLongError",
    "ModelNotFoundError",
    "ModelLoadError",
    "FastPathError",
    "ConversionError",
    "AuthenticationError",
    "TooManyInputsError",
    "PayloadTooLargeError",
    "ServiceUnavailableError",
    "InvalidTextError",
    "ModelRuntimeError",
    "NonFiniteOutputError",
    "UnsupportedNormalizer",
    "RegistryError",
    "BudgetError",
    "BadInputError",
    "CacheError",
    "SearchError",
    "EvalError",
    "RayNotInstalledError",
    "text_problem",
    "check_text",
]


class GGUFEmbedError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param

    def to_openai(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidInputError(GGUFEmbedError):
    code = "invalid_input"


class InputTooLongError(InvalidInputError):
    """An input with more tokens than the model takes; ``n_tokens``, ``limit`` and ``index`` say
    which and by how much (nobody has to parse the message)."""

    code = "context_length_exceeded"

    def __init__(self, message: str, *, n_tokens: int | None = None, limit: int | None = None,
                 index: int | None = None, param: str | None = "input", at_least: bool = False):
        super().__init__(message, param=param)
        self.n_tokens, self.limit, self.index = n_tokens, limit, index
        self.at_least = at_least  # n_tokens counts only the part of the input that was tokenized

    @classmethod
    def for_input(cls, index: int, n_tokens: int, limit: int, *, what: str | None = None, at_least: bool = False,
                  param: str = "input", fix: str = "set truncate to 'end' or 'start'") -> "InputTooLongError":
        """The one wording: "input 3 has 600 tokens, more than the model's limit of 512, too large to
        process; ..." ("too large": the words llama-server's clients match on)
        (``at_least``: only a part of the input was counted, "has at least 600 tokens")."""
        what = what or f"input {index}"
        counted = _counted(n_tokens, at_least)
        return cls(f"{what} has {counted}, more than the model's limit of {limit}, too large to process; "
                   f"shorten it or {fix}",
                   n_tokens=n_tokens, limit=limit, index=index, param=param, at_least=at_least)

    @property
    def counted(self) -> str:
        """"600 tokens", or "at least 600 tokens" when only a part was counted."""
        return _counted(self.n_tokens, self.at_least)


def _counted(n_tokens: int | None, at_least: bool) -> str:
    return f"{'at least ' if at_least else ''}{n_tokens} tokens"


class InvalidTextError(InvalidInputError):
    """A string UTF-8 cannot encode: a lone UTF-16 surrogate, as an unpaired ``\\ud800`` escape in
    JSON (common in scraped data) or a non-UTF-8 command-line argument gives. ``index`` says which
    input of a list."""

    code = "invalid_text"

    def __init__(self, message: str, *, param: str | None = None, index: int | None = None):
        super().__init__(message, param=param)
        self.index = index


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be embedded as it is (it has a lone surrogate), or None when it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"has a lone UTF-16 surrogate {ascii(text[exc.start])} at character {exc.start}, which UTF-8 "
                "cannot encode; remove it or pair it with its other half")
    return None


def check_text(text: str, what: str, *, param: str | None = None, index: int | None = None) -> str:
    """``text`` unchanged, or an ``InvalidTextError`` naming ``what`` ("input 3", "'query'")."""
    why = text_problem(text)
    if why is not None:
        raise InvalidTextError(f"{what} {why}", param=param, index=index)
    return text


class TooManyInputsError(InvalidInputError):
    status_code = 413
    code = "too_many_inputs"


class PayloadTooLargeError(InvalidInputError):
    status_code = 413
    code = "payload_too_large"


class ModelNotFoundError(GGUFEmbedError):
    status_code = 404
    code = "model_not_found"


class ModelLoadError(GGUFEmbedError):
    code = "model_load_failed"


class FastPathError(ModelLoadError):
    """The last-token fast path did not give the rows it should (the runtime falls back)."""

    code = "fast_path_failed"


class ConversionError(GGUFEmbedError):
    code = "conversion_failed"


class AuthenticationError(GGUFEmbedError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ModelRuntimeError(GGUFEmbedError):
    """llama.cpp ran but gave a result that cannot be right: the call fails (a 500 in the
    server's envelope, one line on the command line) and the runtime recovers for the next one."""

    status_code = 500
    error_type = "server_error"
    code = "model_runtime_error"


class NonFiniteOutputError(ModelRuntimeError):
    """A pooled row with a NaN or inf (seen from some GPU backends): never returned or cached; the
    llama.cpp context is rebuilt before this is raised. ``index``: the input's place in the call."""

    code = "non_finite_output"

    def __init__(self, message: str, *, index: int, param: str | None = "input"):
        super().__init__(message, param=param)
        self.index = index

    @classmethod
    def for_input(cls, index: int, *, what: str | None = None, param: str = "input") -> "NonFiniteOutputError":
        """The one wording: "the model's vector for input 3 is not finite (NaN or inf); ..."."""
        what = what or f"input {index}"
        return cls(f"the model's vector for {what} is not finite (NaN or inf); the llama.cpp context has been "
                   "rebuilt for the next call (if it keeps happening, the GPU backend may be at fault: try the CPU "
                   "or another KV-cache type)", index=index, param=param)


class UnsupportedNormalizer(GGUFEmbedError, ValueError):
    """A tokenizer.json normaliser (or a GGUF value) gguf-embed cannot reproduce."""

    code = "unsupported_normalizer"


class RegistryError(GGUFEmbedError):
    """models.toml (the package's or a user's) is malformed."""

    code = "bad_registry"


class BudgetError(InvalidInputError):
    """The model and the asked-for settings do not fit a memory budget (``--vram``)."""

    code = "does_not_fit"


class BadInputError(InvalidInputError):
    """A corpus record (or a whole input file) that cannot be embedded; the message names its place."""

    code = "bad_input"


class CacheError(GGUFEmbedError):
    """The vector cache file cannot be created, opened or used."""

    code = "cache_error"


class SearchError(InvalidInputError):
    """An index, its manifest or a search request that cannot be used."""

    code = "search_error"


class EvalError(GGUFEmbedError):
    code = "eval_failed"


class RayNotInstalledError(GGUFEmbedError):
    code = "ray_not_installed"


class ServiceUnavailableError(GGUFEmbedError):
    status_code = 503
    error_type = "server_error"
    code = "loading"

"""What an embeddings request may give as its inputs: OpenAI's forms and llama-server's.

OpenAI's ``input``: a string, a list of strings, a list of token ids or a list of token-id lists.
llama-server also takes, in ``input`` or ``content``: a list mixing token ids and strings (one
prompt: each string's tokens in place), such lists among the prompts, and objects,
``{"prompt_string": ...}`` and ``{"content": [{"type": "text", "text": ...}, ...]}`` (OpenAI-style
content parts, their texts joined with nothing between them). Images and audio are refused: no
served model reads them.

``parse_prompts`` checks the value and gives one prompt per input, each a string or a list of
token ids and strings; ``split_prompts`` sorts them into the request's three forms.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError, TooManyInputsError, check_text

__all__ = ["parse_prompts", "split_prompts", "MAX_TOKEN_ID"]

MAX_TOKEN_ID = 2**31 - 1  # llama.cpp's token ids are int32; the model's vocabulary is checked later
MEDIA = {"image_url": "image", "input_image": "image", "input_audio": "audio", "audio_url": "audio"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Reader:
    """The checks of one request's inputs (``key``: the field they came in)."""

    def __init__(self, key: str, allow_empty: bool):
        self.key, self.allow_empty = key, allow_empty

    def fail(self, message: str) -> InvalidInputError:
        return InvalidInputError(message, param=self.key)

    def text(self, value: str, i: int) -> str:
        if not value and not self.allow_empty:
            raise self.fail(f"input {i} is an empty string")
        return check_text(value, f"input {i}", param=self.key, index=i)

    def ids(self, value: list, i: int) -> list:
        """Token ids, with strings among them where llama-server takes them."""
        if not value:
            raise self.fail(f"input {i} is an empty list of token ids")
        for v in value:
            if isinstance(v, str):
                check_text(v, f"input {i}", param=self.key, index=i)
            elif not _is_int(v):
                raise self.fail(f"input {i} must be a list of integer token ids (strings may be mixed in)")
            elif not -2**63 <= v < 2**63:  # beyond int64; the vocabulary check names the model's range
                raise self.fail(f"input {i} has token ids outside 0..{MAX_TOKEN_ID}")
        return list(value)

    def parts(self, parts: Any, i: int) -> str:
        if not isinstance(parts, list) or not parts:
            raise self.fail(f"input {i}: 'content' must be a non-empty list of parts like "
                            '{"type": "text", "text": "..."}')
        texts = []
        for part in parts:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in MEDIA:
                raise self.fail(f"input {i}: {MEDIA[kind]} input is not supported; the served models read text")
            if kind != "text" or not isinstance(part.get("text"), str):
                raise self.fail(f"input {i}: each content part must be {{\"type\": \"text\", \"text\": \"...\"}}")
            texts.append(part["text"])
        return self.text("".join(texts), i)

    def entry(self, obj: dict, i: int) -> Any:
        if obj.get("multimodal_data"):
            raise self.fail(f"input {i} has multimodal_data; the served models read text only")
        if "prompt_string" in obj:
            return self.prompt(obj["prompt_string"], i, nested=True)
        if "content" in obj:
            return self.parts(obj["content"], i)
        raise self.fail(f"input {i}: an object input needs 'prompt_string' or 'content'")

    def prompt(self, value: Any, i: int, nested: bool = False) -> Any:
        if isinstance(value, str):
            return self.text(value, i)
        if isinstance(value, list) and (any(_is_int(v) for v in value) or not value):
            return self.ids(value, i)
        if isinstance(value, dict) and not nested:
            return self.entry(value, i)
        if value is None:
            raise self.fail(f"'{self.key}' must not contain null items")
        raise self.fail(f"input {i} must be a string, a list of token ids (strings may be mixed in) or an "
                        "object with 'content' parts or a 'prompt_string'")


def parse_prompts(value: Any, key: str, max_inputs: int, *, allow_empty: bool = False) -> list:
    """The prompts of ``value`` (a request's ``input`` or ``content``), each a string or a list of token
    ids and strings; a client mistake is a 400 naming ``key`` (413 for too many)."""
    reader = _Reader(key, allow_empty)
    if value is None:
        raise reader.fail(f"'{key}' is required")
    if isinstance(value, (str, dict)):
        return [reader.prompt(value, 0)]
    if not isinstance(value, list):
        raise reader.fail(f"'{key}' must be a string, a list of strings or a list of token ids")
    if not value:
        raise reader.fail(f"'{key}' must not be empty")
    if any(_is_int(v) for v in value):  # token ids (strings may be mixed in): one prompt
        return [reader.ids(value, 0)]
    if len(value) > max_inputs:
        raise TooManyInputsError(f"'{key}' has {len(value)} items; at most {max_inputs} per request", param=key)
    return [reader.prompt(v, i) for i, v in enumerate(value)]


def split_prompts(prompts: list) -> tuple[list[str] | None, list[list[int]] | None, list | None]:
    """(texts, token_ids, mixed): all texts, all pure token ids, or else every prompt as it is."""
    if all(isinstance(p, str) for p in prompts):
        return prompts, None, None
    if all(isinstance(p, list) and all(_is_int(t) for t in p) for p in prompts):
        return None, prompts, None
    return None, None, prompts

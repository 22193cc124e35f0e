"""Prompts and pair templates: which text goes around a query, a document or a (query, document) pair.

* Embedding prompts come from the model (``ModelInfo.prompts``): ``query`` / ``document``.
  Instruction-following models (Qwen3-Embedding) take a task: ``Instruct: {task}\\nQuery:``.
* A decoder reranker's body holds ``{instruction}``, ``{query}`` and ``{document}``; the text
  before and after the document is filled here, the document is tokenised (and cut) separately.
"""

from __future__ import annotations

import re
from typing import Mapping

from .. import choices
from ..errors import InvalidInputError

__all__ = ["INSTRUCT_PREFIX", "prompt_for", "instruction_prompt", "split_pair", "parse_rerank_template"]

INSTRUCT_PREFIX = "Instruct: "
INSTRUCT_TAG = "<Instruct>: "  # Qwen3-Reranker's instruction line
_SLOTS = re.compile(r"\{(instruction|query)\}")


def instruction_prompt(task: str) -> str:
    """Qwen3-Embedding's query prompt for a task."""
    return f"{INSTRUCT_PREFIX}{task}\nQuery:"


def prompt_for(prompts: Mapping[str, str], model: str, input_type: str | None, instruction: str | None) -> str:
    """The text put before an input of ``input_type`` (default: document)."""
    if input_type is not None and input_type not in choices.INPUT_TYPES:
        raise InvalidInputError(f"input_type must be one of {', '.join(choices.INPUT_TYPES)}", param="input_type")
    if instruction is not None:
        if input_type == "document":
            raise InvalidInputError("an instruction applies to queries, not documents", param="instruction")
        query = prompts.get("query", "")
        if not query.startswith(INSTRUCT_PREFIX):
            raise InvalidInputError(
                f"model {model} takes no task instruction (its query prompt is {query!r})", param="instruction"
            )
        return instruction_prompt(instruction)
    return prompts.get(input_type or "document", "")


def split_pair(body: str, query: str, instruction: str) -> tuple[str, str]:
    """(text before the document, text after it) with the query and instruction filled in."""
    before, _, after = body.partition("{document}")
    fill = lambda m: instruction if m.group(1) == "instruction" else query  # noqa: E731
    return _SLOTS.sub(fill, before), _SLOTS.sub(fill, after)


def parse_rerank_template(template: str) -> tuple[str, str, str, str | None]:
    """(prefix, body, suffix, default instruction) of a rerank prompt as llama.cpp stores it
    (``tokenizer.chat_template.rerank``: one text with ``{query}`` and ``{document}``).

    The body runs from the instruction line (``<Instruct>: ...``, Qwen3-Reranker's recipe) or
    else from the line holding ``{query}``, to the end of ``{document}``; the instruction in it
    becomes ``{instruction}`` so that a custom one can replace it."""
    if "{query}" not in template or "{document}" not in template:
        raise InvalidInputError("a rerank template needs {query} and {document}")
    end = template.index("{document}") + len("{document}")
    marker = template.find(INSTRUCT_TAG)
    if 0 <= marker < template.index("{query}"):
        stop = template.index("\n", marker)
        instruction = template[marker + len(INSTRUCT_TAG):stop]
        body = template[marker:marker + len(INSTRUCT_TAG)] + "{instruction}" + template[stop:end]
        return template[:marker], body, template[end:], instruction
    start = template.rfind("\n", 0, template.index("{query}")) + 1
    return template[:start], template[start:end], template[end:], None

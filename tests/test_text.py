"""The text stage without a model: fitting framed sequences into a limit, the special frame,
prompts and pair templates."""

from __future__ import annotations

import numpy as np
import pytest

from gguf_embed.errors import InputTooLongError, InvalidInputError
from gguf_embed.text import templates
from gguf_embed.text.frame import Frame, common_prefix, fit_body, special_frame

pytestmark = pytest.mark.quick

QWEN_PROMPTS = {"query": templates.instruction_prompt("Given a web search query, retrieve relevant passages"),
                "document": ""}


def test_fit_body_keeps_head_and_tail():
    toks = np.arange(10, dtype=np.int32)  # head 2, body 6, tail 2
    assert fit_body(toks, 2, 2, 10, "end").tolist() == toks.tolist()
    assert fit_body(toks, 2, 2, 7, "end").tolist() == [0, 1, 2, 3, 4, 8, 9]
    assert fit_body(toks, 2, 2, 7, "start", keep=1).tolist() == [0, 1, 2, 6, 7, 8, 9]
    assert common_prefix(np.array([1, 2, 3]), np.array([1, 2, 4, 5])) == 2


def test_frame_fit_refuses_with_the_numbers():
    frame = Frame(np.array([101], np.int32), np.array([102], np.int32))
    toks = np.arange(12, dtype=np.int32)
    with pytest.raises(InputTooLongError) as err:
        frame.fit(toks, 10, "error", index=3)
    assert (err.value.n_tokens, err.value.limit, err.value.index) == (12, 10, 3)
    assert err.value.message.startswith("input 3 has 12 tokens, more than the model's limit of 10")
    assert frame.fit(toks, 10, "end", index=3).tolist() == [0, *range(1, 9), 11]


def test_frame_wraps_client_ids_once():
    frame = Frame(np.array([101], np.int32), np.array([102], np.int32))
    assert frame.wrap([5, 6], n_vocab=200, index=0).tolist() == [101, 5, 6, 102]
    assert frame.wrap([101, 5, 102], n_vocab=200, index=0).tolist() == [101, 5, 102]
    with pytest.raises(InvalidInputError, match="outside 0..199"):
        frame.wrap([5, 300], n_vocab=200, index=1)
    with pytest.raises(InvalidInputError, match="non-empty"):
        frame.wrap([], n_vocab=200, index=1)


def test_special_frame_from_a_tokenizer():
    def tokenize(text, *, add_special, parse_special=False):
        body = [ord(c) for c in text]
        return np.array([1, *body, 2] if add_special else body, np.int32)

    frame = special_frame(tokenize)
    assert frame.prefix.tolist() == [1] and frame.suffix.tolist() == [2]


def test_prompts_and_instructions():
    assert templates.prompt_for(QWEN_PROMPTS, "m", None, None) == ""
    assert templates.prompt_for(QWEN_PROMPTS, "m", "query", None) == QWEN_PROMPTS["query"]
    assert templates.prompt_for(QWEN_PROMPTS, "m", "query", "Find code") == "Instruct: Find code\nQuery:"
    with pytest.raises(InvalidInputError, match="applies to queries"):
        templates.prompt_for(QWEN_PROMPTS, "m", "document", "Find code")
    with pytest.raises(InvalidInputError, match="takes no task instruction"):
        templates.prompt_for({"query": "query: "}, "e5", "query", "Find code")
    with pytest.raises(InvalidInputError, match="input_type must be one of"):
        templates.prompt_for(QWEN_PROMPTS, "m", "passage", None)


def test_pair_template_fills_query_and_instruction():
    body = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
    before, after = templates.split_pair(body, "q?", "judge")
    assert before == "<Instruct>: judge\n<Query>: q?\n<Document>: " and after == ""

"""GGUF metadata keys that gguf-embed writes beside llama.cpp's own.

llama.cpp's keys (architecture, pooling type, tokenizer...) come from the ``gguf``
package's ``Keys``; these carry what llama.cpp has no key for.
"""

PREFIX = "gguf_embed."
PROMPT = PREFIX + "prompt."  # + prompt name, e.g. gguf_embed.prompt.query
DEFAULT_PROMPT = PREFIX + "default_prompt_name"
MAX_TOKENS = PREFIX + "max_tokens"
MATRYOSHKA_MIN = PREFIX + "matryoshka_min"
NORMALIZE = PREFIX + "normalize"
SOURCE = PREFIX + "source"
TEXT_NORMALIZER = PREFIX + "text_normalizer"  # see gguf_embed.textnorm
REGISTRY_NAME = PREFIX + "registry_name"
TASK = PREFIX + "task"  # "embed" | "rerank"
# A decoder reranker's prompt: prefix + body + suffix, each tokenised on its own; the body
# has {instruction}, {query} and {document}, and only the document is ever truncated.
RERANK_PREFIX = PREFIX + "rerank.prefix"
RERANK_BODY = PREFIX + "rerank.body"
RERANK_SUFFIX = PREFIX + "rerank.suffix"
RERANK_INSTRUCTION = PREFIX + "rerank.default_instruction"
TYPE1_OFFSET = PREFIX + "token_type_1_offset"  # token id + offset = the same token in segment 1
TASKS = ("embed", "rerank")
# llama.cpp's key for the rerank prompt (llama-server --rerank fills {query} and {document})
LLAMA_RERANK_TEMPLATE = "tokenizer.chat_template.rerank"

# llama.cpp's enum llama_pooling_type, as written in "{arch}.pooling_type"
POOLING_IDS = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
POOLING_NAMES = {v: k for k, v in POOLING_IDS.items()}

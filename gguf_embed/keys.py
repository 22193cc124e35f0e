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

# llama.cpp's enum llama_pooling_type, as written in "{arch}.pooling_type"
POOLING_IDS = {"none": 0, "mean": 1, "cls": 2, "last": 3}
POOLING_NAMES = {v: k for k, v in POOLING_IDS.items()}

"""Every GGUF metadata key gguf-embed reads or writes, defined once.

llama.cpp's own keys (architecture, pooling type, tokenizer...) are spelled as llama.cpp's
converter writes them; the ``gguf_embed.*`` keys carry what llama.cpp has no key for.
"""

from __future__ import annotations

# llama.cpp's enum llama_pooling_type, as written in "{arch}.pooling_type"
POOLING_IDS = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
POOLING_NAMES = {v: k for k, v in POOLING_IDS.items()}

# --- gguf-embed's own metadata keys ---------------------------------------------------

PREFIX = "gguf_embed."
PROMPT = PREFIX + "prompt."  # + prompt name, e.g. gguf_embed.prompt.query
DEFAULT_PROMPT = PREFIX + "default_prompt_name"
MAX_TOKENS = PREFIX + "max_tokens"
MATRYOSHKA_MIN = PREFIX + "matryoshka_min"
NORMALIZE = PREFIX + "normalize"
SOURCE = PREFIX + "source"
TEXT_NORMALIZER = PREFIX + "text_normalizer"  # see gguf_embed.text.normalize
REGISTRY_NAME = PREFIX + "registry_name"
TASK = PREFIX + "task"  # "embed" | "rerank"
# A decoder reranker's prompt: prefix + body + suffix, each tokenised on its own; the body
# has {instruction}, {query} and {document}, and only the document is ever truncated.
RERANK_PREFIX = PREFIX + "rerank.prefix"
RERANK_BODY = PREFIX + "rerank.body"
RERANK_SUFFIX = PREFIX + "rerank.suffix"
RERANK_INSTRUCTION = PREFIX + "rerank.default_instruction"
TYPE1_OFFSET = PREFIX + "token_type_1_offset"  # token id + offset = the same token in segment 1
# bge-m3's extra heads, in metadata (llama.cpp refuses a file with tensors its graph does not create, and
# ignores metadata it does not know). HEADS lists the heads the file has; each head's weight (rows, n_embd),
# row-major, and bias (rows,) are little-endian float32 bytes in base64 strings (a float32 metadata array of
# bge-m3's 1024 x 1024 ColBERT weight adds 1-2 s to every llama.cpp load: it formats every element for its log);
# sparse has rows=1 (relu(w.h + b) per token), colbert rows=HEAD_ROWS
HEADS = PREFIX + "heads"
HEAD_WEIGHT = PREFIX + "head.{}.weight"  # .format("sparse" | "colbert")
HEAD_BIAS = PREFIX + "head.{}.bias"
HEAD_ROWS = PREFIX + "head.{}.rows"
HEAD_SKIP_IDS = PREFIX + "head.sparse.skip_ids"  # token ids without a lexical weight (CLS, EOS, PAD, UNK)
QUANT_CHOICE = PREFIX + "quant_choice"  # why --quant auto wrote this type (absent for a type asked for by name)

IMATRIX_TOKENS = PREFIX + "imatrix.tokens"  # calibration tokens behind an importance matrix
QUANT_MIX = PREFIX + "quantize.mix"  # the tensor mixture convert quantised with (QUANT_MIXES)

# --- llama.cpp's keys ----------------------------------------------------------------

ARCH = "general.architecture"
FILE_TYPE = "general.file_type"
#: the rerank prompt (llama-server --rerank fills {query} and {document})
LLAMA_RERANK_TEMPLATE = "tokenizer.chat_template.rerank"
#: a cross-encoder's pair gets a separator after the query's closing token (XLM-R: </s></s>)
LLAMA_ADD_SEP = "tokenizer.ggml.add_sep_token"
LLAMA_SEP_ID = "tokenizer.ggml.seperator_token_id"  # sic: gguf's spelling
LLAMA_EOS_ID = "tokenizer.ggml.eos_token_id"
LLAMA_TOKENIZER = "tokenizer.ggml.model"
LLAMA_LOWERCASE = "tokenizer.ggml.normalizer.lowercase"  # an uncased WordPiece vocabulary


def arch_key(arch: str, name: str) -> str:
    """``{arch}.{name}``, e.g. ``qwen3.pooling_type``."""
    return f"{arch}.{name}"

# an importance matrix file (llama.cpp's tools/imatrix) and the keys llama-quantize writes with one
IMATRIX_DATASETS = "imatrix.datasets"
IMATRIX_CHUNK_COUNT = "imatrix.chunk_count"
IMATRIX_CHUNK_SIZE = "imatrix.chunk_size"
QUANTIZE_IMATRIX_FILE = "quantize.imatrix.file"
QUANTIZE_IMATRIX_DATASET = "quantize.imatrix.dataset"
QUANTIZE_IMATRIX_ENTRIES = "quantize.imatrix.entries_count"
QUANTIZE_IMATRIX_CHUNKS = "quantize.imatrix.chunks_count"

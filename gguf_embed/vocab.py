"""Every closed choice set and every GGUF metadata key gguf-embed reads or writes, defined once.

The command line (``click.Choice``), the HTTP request parsers, the registry and the
runtime all read their choices from here, so a new pooling or KV type is added in one place.
llama.cpp's own keys (architecture, pooling type, tokenizer...) are spelled as llama.cpp's
converter writes them; the ``gguf_embed.*`` keys carry what llama.cpp has no key for.
"""

from __future__ import annotations

# --- choice sets ---------------------------------------------------------------------

POOLINGS = ("mean", "cls", "last")
TASKS = ("embed", "rerank")
INPUT_TYPES = ("query", "document")
#: over-long inputs: refuse, cut the end, or cut the start (embedding default: error; rerank: end)
TRUNCATE_POLICIES = ("error", "end", "start")
KV_TYPES = ("f16", "f32", "q8_0", "q4_0", "bf16")
FLASH_ATTN_MODES = ("auto", "on", "off")
ARCHITECTURES = ("qwen3", "bert", "xlm-roberta")
#: output types of ``gguf-embed convert``: the first three are written directly, the rest by
#: llama.cpp's quantizer
QUANT_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q5_0", "Q4_0",
               "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "IQ4_XS", "IQ4_NL", "IQ3_M", "IQ3_S", "IQ3_XXS")
#: the quant types llama.cpp quantises only with an importance matrix (``--imatrix``)
IMATRIX_REQUIRED = ("IQ3_XXS",)
#: ``convert --imatrix``: computed here on the built-in (or ``--calibration``) texts, or else a file
IMATRIX_AUTO = "auto"
ENCODING_FORMATS = ("float", "base64")
#: how a command prints a listing (rerank, tokenize): a table for people, JSON lines for programs
LISTING_FORMATS = ("table", "jsonl")
#: approximate search indexes ``gguf-embed search --faiss`` builds (inner product): graph or inverted lists
FAISS_INDEXES = ("hnsw", "ivf")

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

IMATRIX_TOKENS = PREFIX + "imatrix.tokens"  # calibration tokens behind an importance matrix

# --- llama.cpp's keys ----------------------------------------------------------------

ARCH = "general.architecture"
FILE_TYPE = "general.file_type"
#: the rerank prompt (llama-server --rerank fills {query} and {document})
LLAMA_RERANK_TEMPLATE = "tokenizer.chat_template.rerank"


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

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
#: ``convert --mix``: which tensors of a quantised file get which type. ``embedding`` (the default
#: for embedding models): llama.cpp's mixture with the changes an embedding model wants (see
#: ``model.tensor_table``); ``llama``: llama.cpp's own, tuned on language models (rerankers keep it)
QUANT_MIXES = ("embedding", "llama")
#: ``convert --imatrix``: computed here on the built-in (or ``--calibration``) texts, or else a file
IMATRIX_AUTO = "auto"
#: ``--quant auto`` (and a models.toml ``default_quant = "auto"``): the fastest of the lossless
#: 16-bit types on this machine (BF16 where llama.cpp's CPU backend has AVX512-BF16, else F16)
AUTO_QUANT = "AUTO"
LOSSLESS_TYPES = ("BF16", "F16")
QUANT_CHOICES = (AUTO_QUANT, *QUANT_TYPES)
ENCODING_FORMATS = ("float", "base64")
#: how a command prints a listing (rerank, tokenize): a table for people, JSON lines for programs
LISTING_FORMATS = ("table", "jsonl")
#: approximate search indexes ``gguf-embed search --faiss`` builds (inner product): graph or inverted lists
FAISS_INDEXES = ("hnsw", "ivf")
#: stored and returned vector types (``heads.precision``): float32; int8/uint8 codes per dimension
#: over ranges fixed per model; one bit per dimension, packed eight to a byte (signed / unsigned)
PRECISIONS = ("float", "int8", "uint8", "binary", "ubinary")
#: what a binary index may keep beside its bits for rescoring its Hamming candidates
RESCORE_PRECISIONS = ("int8", "float")
#: Cohere's ``embedding_types``: the precisions and base64 (the float32 bytes)
COHERE_EMBEDDING_TYPES = PRECISIONS + ("base64",)
#: Cohere's ``input_type`` -> the prompt gguf-embed applies (symmetric tasks embed as documents)
COHERE_INPUT_TYPES = {"search_query": "query", "search_document": "document", "classification": "document",
                      "clustering": "document"}
#: Cohere's ``truncate`` -> gguf-embed's truncation policy
COHERE_TRUNCATE = {"NONE": "error", "START": "start", "END": "end"}
#: what one encoder pass can give per text (``encode --emit``, ``Embedder.embed(outputs=...)``): the pooled
#: vector, bge-m3's sparse lexical weights and ColBERT multi-vectors, and every token's hidden state
OUTPUTS = ("dense", "sparse", "colbert", "tokens")
#: the outputs that need heads stored in the file (the others every model gives)
HEAD_OUTPUTS = ("sparse", "colbert")

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

"""Every closed choice set gguf-embed offers, defined once.

The command line (``click.Choice``), the HTTP request parsers, the registry and the
runtime all read their choices from here, so a new pooling or KV type is added in one place.
"""

from __future__ import annotations


POOLINGS = ("mean", "cls", "last")
TASKS = ("embed", "rerank")
INPUT_TYPES = ("query", "document")
#: over-long inputs: refuse, cut the end, or cut the start (embedding default: error; rerank: end)
TRUNCATE_POLICIES = ("error", "end", "start")
KV_TYPES = ("f16", "f32", "q8_0", "q4_0", "bf16")
FLASH_ATTN_MODES = ("auto", "on", "off")
ARCHITECTURES = ("qwen3", "bert", "xlm-roberta", "nomic-bert", "modern-bert", "gemma-embedding")
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
#: how int8/uint8 codes map to floats (``heads.precision``): one scale per model with 0 at code 0 (raw
#: dot products of int8 codes rank like the floats), or sentence-transformers' per-dimension offset and step
CODE_SCHEMES = ("symmetric", "per-dimension")
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

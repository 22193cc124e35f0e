"""What the tests and the benchmarks share, kept out of the wheel (they need torch and transformers):
tiny random models around real tokenizers (``tools.models``), varied real sentences (``tools.texts``)
and a random-weight folder with a real model's shapes (``tools/synth.py``)."""

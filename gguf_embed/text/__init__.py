"""Text before the model: normalise, apply the prompt or pair template, frame with the special
tokens, truncate. Pure functions over strings and token-id arrays; tokenisation itself is the
engine's (it is llama.cpp's), handed in as a callable."""

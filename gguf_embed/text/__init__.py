"""Tokenizers written in Python, for the texts llama.cpp's own would get wrong."""

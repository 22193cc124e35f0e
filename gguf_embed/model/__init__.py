"""What a GGUF file says: its metadata and tensor table (``gguf_file``), the architecture facts
(``archs``), one ``ModelInfo`` per file (``info``), and the tensor table a conversion would write
(``tensor_table``, for planning before a download). Never llama.cpp."""

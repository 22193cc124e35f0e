"""The engine: the only code that runs llama.cpp (``llama``), a ``Session`` = model + context +
batch runner, the cross-request ``scheduler``, one frozen ``RuntimeSettings``, and the memory
model of what llama.cpp allocates (``planning``). Importing this package loads no llama.cpp:
``settings`` and ``planning`` are pure, so a plan is made before any download."""

"""How the companion uses the machine: thread counts for generation and training (`threads`). The ways of
running the model for the day live beside it: full precision or int8 (`companion.model.quantize`), or
llama.cpp on the GGUF export of the weights (`companion.llamacpp`)."""

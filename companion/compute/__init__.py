"""How the companion uses the machine: thread counts for generation and training (`threads`), and the
number format a night trains in (`precision`: bfloat16 where the hardware does it natively). The ways of
running the model for the day live beside it: full precision or int8 (`companion.model.quantize`), or
llama.cpp on the GGUF export of the weights (`companion.llamacpp`)."""

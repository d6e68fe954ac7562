"""Speaking the ecosystem's formats: a Hugging Face Llama folder and llama.cpp's GGUF, both ways.

`llama` maps our tensors to the Llama layout (the one mapping every format goes through),
`tokenizer` writes and rebuilds tokenizers other tools read exactly as we do, `hf` and `gguf` read
and write the two formats, and `base` turns an open Llama-family model into a companion's first
weights. Nothing here knows of days or owners; a refusal is an `InteropError` naming the file.
"""

from companion.model.interop.errors import InteropError

__all__ = ["InteropError"]

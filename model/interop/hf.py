"""A Hugging Face Llama folder, written for `LlamaForCausalLM` and read back from safetensors.

Export writes `config.json`, `model.safetensors`, the tokenizer files (`model.interop.tokenizer`), a
`generation_config.json` whose stop ids are ours (end of turn and every role token) and a model card
the caller writes (`README.md`). Import reads a Llama folder's safetensors (never pickle) and its
`tokenizer.json`; everything else a Llama may have that we would not compute exactly is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer as RawTokenizer

from companion.model.config import ModelConfig
from companion.model.interop.errors import InteropError
from companion.model.interop.llama import config_from_hf, from_llama, hf_config, to_llama
from companion.model.interop.output import staged_folder
from companion.model.interop.tokenizer import hf_tokenizer_files

DTYPES = {"f32": (torch.float32, "float32"), "f16": (torch.float16, "float16"), "bf16": (torch.bfloat16, "bfloat16")}


def export_hf(
    model_state: dict[str, torch.Tensor],
    config: ModelConfig,
    tokenizer: Any,
    path: str | Path,
    *,
    dtype: str = "f32",
    card: str = "",
    overwrite: bool = False,
) -> Path:
    """Write a folder that `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`
    load as exactly our model and tokenizer. `tokenizer` is our `model.tokenizer.Tokenizer`."""
    if dtype not in DTYPES:
        raise InteropError(f"dtype {dtype!r} is not supported for a Hugging Face folder; choose one of: {', '.join(DTYPES)}")
    torch_dtype, dtype_name = DTYPES[dtype]
    if tokenizer.vocab_size != config.vocab_size:
        raise InteropError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model {config.vocab_size}")
    tensors = {k: v.detach().to("cpu", torch_dtype).contiguous() for k, v in to_llama(model_state, config).items()}
    stops = [tokenizer.end_id, *tokenizer.role_ids.values()]
    specials = sorted(tokenizer.special_ids)
    names = [tokenizer.raw.id_to_token(i) for i in specials]
    eos, pad = tokenizer.raw.id_to_token(tokenizer.end_id), tokenizer.raw.id_to_token(tokenizer.pad_id)
    files = hf_tokenizer_files(tokenizer.raw, eos=eos, pad=pad, specials=names, max_length=config.block_size)
    files["config.json"] = json.dumps(hf_config(config, eos_id=tokenizer.end_id, pad_id=tokenizer.pad_id,
                                                dtype=dtype_name), indent=2).encode()
    files["generation_config.json"] = json.dumps({
        "bos_token_id": None, "eos_token_id": stops, "pad_token_id": tokenizer.pad_id,
        "do_sample": True, "temperature": 0.8, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1,
    }, indent=2).encode()
    if card:
        files["README.md"] = card.encode("utf-8")
    with staged_folder(Path(path), overwrite) as folder:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return Path(path)


def read_hf(path: str | Path, block_size: int | None = None) -> tuple[ModelConfig, dict[str, torch.Tensor], RawTokenizer]:
    """Our config, our state dict (f32) and the raw tokenizer of a Hugging Face Llama folder."""
    folder = Path(path)
    source = str(folder)
    config_path = folder / "config.json"
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InteropError(f"{config_path}: missing; not a Hugging Face model folder") from None
    except (OSError, ValueError) as exc:
        raise InteropError(f"{config_path}: unreadable ({exc})") from exc
    if not isinstance(cfg, dict):
        raise InteropError(f"{config_path}: not a JSON object")
    config = config_from_hf(cfg, str(config_path), block_size)
    weight_files = sorted(folder.glob("*.safetensors"))
    if not weight_files:
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        why = f" ({', '.join(pickled)} is pickle, which is never read)" if pickled else ""
        raise InteropError(f"{source}: no .safetensors weights{why}")
    tensors: dict[str, torch.Tensor] = {}
    for file in weight_files:
        try:
            with safe_open(str(file), framework="pt") as fh:
                for key in fh.keys():
                    tensors[key] = fh.get_tensor(key).float()
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise InteropError(f"{file}: unreadable or truncated ({exc})") from exc
    tokenizer_path = folder / "tokenizer.json"
    try:
        raw = RawTokenizer.from_file(str(tokenizer_path))
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise InteropError(f"{tokenizer_path}: cannot read the tokenizer ({exc})") from exc
    if raw.get_vocab_size(with_added_tokens=True) != config.vocab_size:
        raise InteropError(f"{tokenizer_path}: {raw.get_vocab_size(with_added_tokens=True)} tokens, but the model "
                           f"has {config.vocab_size} embedding rows; not supported")
    return config, from_llama(tensors, config, source), raw

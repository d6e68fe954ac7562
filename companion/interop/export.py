"""Export a checkpoint to a Hugging Face folder or a GGUF file, with a model card telling its story.

Reads only: the store and the weights are never changed, so an export needs no lock and may run while
the app is open. Refusals (an existing target, an unknown checkpoint or dtype, a damaged file) are an
`ExportError` naming what is wrong; nothing is created under the target's name unless all of it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from companion.home import Home
from companion.store import Checkpoint, Store

FORMATS = {"hf": ("f32", "f16", "bf16"), "gguf": ("f16", "f32", "q8_0")}  # first: the default dtype


class ExportError(ValueError):
    """An export refused before or during writing; nothing was left under the target's name."""


@dataclass
class Exported:
    path: Path
    format: str
    dtype: str
    checkpoint: Checkpoint
    size_bytes: int


def model_card(name: str, born: str, days_lived: int, checkpoint: Checkpoint, fmt: str, dtype: str) -> str:
    """The README of an exported companion: who it is and how to talk to it in other tools."""
    return f"""# {name}

A companion: a small language model kept for life and taught by its owner every day
(made with `companion`, a terminal app).

- name: {name}
- born: {born}
- days lived: {days_lived}
- weights: checkpoint {checkpoint.id} ({checkpoint.reason}, {checkpoint.created_at}), step {checkpoint.step:,}
- format: {"Hugging Face Llama (LlamaForCausalLM)" if fmt == "hf" else "GGUF (llama.cpp)"}, {dtype}

## Chat format
Each turn is `<|role|>text<|end|>`, with no separators, roles `owner` (the person), `companion` (this
model) and `inner` (its inner voice). To ask for a reply, end the prompt with `<|companion|>`; the reply
ends at `<|end|>` or at any role token. There is no BOS token. The chat template maps `user` to owner,
`assistant` to companion and `system` to inner.

Text the owner types is plain text: `<|owner|>` typed in a message is not a role, so the tokenizer
splits special tokens in text (`split_special_tokens`); the role tokens are placed by id.
"""


def _checkpoint(store: Store, checkpoint_id: int | None, home: Home) -> Checkpoint:
    from companion.history.weights import Weights

    if checkpoint_id is None:
        current = Weights(home, store).current()
        if current is None:
            raise ExportError(f"{home.path}: no checkpoint yet (the companion is not born)")
        return current
    found = store.get_checkpoint(checkpoint_id)
    if found is None:
        raise ExportError(f"there is no checkpoint {checkpoint_id}; `companion checkpoints` lists them")
    return found


def export_checkpoint(home: Home, store: Store, fmt: str, path: str | Path, *, dtype: str | None = None,
                      checkpoint_id: int | None = None, overwrite: bool = False) -> Exported:
    """Write checkpoint `checkpoint_id` (default: the current one) as `fmt` ("hf" or "gguf") at `path`."""
    from companion.model.checkpoint import CheckpointError
    from companion.model.interop import InteropError
    from companion.model.interop.output import check_target
    from companion.model.tokenizer import TokenizerError

    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not supported; choose one of: {', '.join(FORMATS)}")
    dtype = dtype or FORMATS[fmt][0]
    if dtype not in FORMATS[fmt]:
        raise ExportError(f"dtype {dtype!r} is not supported for {fmt}; choose one of: {', '.join(FORMATS[fmt])}")
    path = Path(path).expanduser().absolute()
    checkpoint = _checkpoint(store, checkpoint_id, home)
    try:
        check_target(path, overwrite, folder=fmt == "hf")  # said before the weights are read
        from companion.history.weights import Weights

        loaded = Weights(home, store).load(checkpoint)  # with the tokenizer these weights read with
        tokenizer, model = loaded.tokenizer(), loaded.model
        settings = home.load_settings()
        days = sum(1 for d in store.days() if d.closed_at is not None)
        card = model_card(settings.companion.name, settings.companion.born, days, checkpoint, fmt, dtype)
        state = model.state_dict()
        if fmt == "hf":
            from companion.model.interop.hf import export_hf

            export_hf(state, model.config, tokenizer, path, dtype=dtype, card=card, overwrite=overwrite)
            size = sum(p.stat().st_size for p in path.iterdir())
        else:
            from companion.model.interop.gguf import export_gguf

            export_gguf(state, model.config, tokenizer, path, dtype=dtype, name=settings.companion.name,
                        eos_id=tokenizer.end_id, pad_id=tokenizer.pad_id, overwrite=overwrite)
            size = path.stat().st_size
    except (InteropError, CheckpointError, TokenizerError) as exc:
        raise ExportError(str(exc)) from exc
    except OSError as exc:  # a full disk while writing: the staged file was removed
        raise ExportError(f"{path}: writing failed, nothing was left there ({exc.strerror or exc})") from exc
    return Exported(path, fmt, dtype, checkpoint, size)

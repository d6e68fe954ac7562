"""Checkpoints: safetensors only, written atomically, loaded strictly.

The weights are the asset. A save writes a temporary file beside the target, fsyncs it, renames it over
the target and fsyncs the folder, so a crash or a full disk leaves either the old file or the new one,
never half of one. Every file carries its story (config, step, day, reason, parent, created, probe
scores) and a checksum of its tensors; a load that finds a truncated, edited or mismatched file raises
`CheckpointError` naming the file and what is wrong, so the caller can fall back to an older one.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from companion.model.atomic import atomic_write_bytes
from companion.model.config import ConfigError, ModelConfig
from companion.model.transformer import Transformer

FORMAT = "companion-checkpoint-1"


class CheckpointError(Exception):
    """A checkpoint that cannot be trusted: missing, truncated, edited, or not for this model."""


@dataclass
class CheckpointMeta:
    """The story of a set of weights. `extra` holds anything else a caller wants kept (str values)."""

    config: ModelConfig
    reason: str
    step: int = 0
    day: int | None = None
    parent: str | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    probe: dict[str, float | str] = field(default_factory=dict)
    checksum: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_header(self) -> dict[str, str]:
        header = {
            "format": FORMAT,
            "config": self.config.to_json(),
            "reason": self.reason,
            "step": str(self.step),
            "day": "" if self.day is None else str(self.day),
            "parent": self.parent or "",
            "created": self.created,
            "probe": json.dumps(self.probe, sort_keys=True),
            "checksum": self.checksum,
        }
        header.update({f"x.{k}": v for k, v in self.extra.items()})
        return header

    @classmethod
    def from_header(cls, header: dict[str, str], source: str) -> "CheckpointMeta":
        if header.get("format") != FORMAT:
            raise CheckpointError(f"{source}: not a companion checkpoint (format {header.get('format')!r})")
        try:
            return cls(
                config=ModelConfig.from_json(header["config"]),
                reason=header["reason"],
                step=int(header["step"]),
                day=int(header["day"]) if header.get("day") else None,
                parent=header.get("parent") or None,
                created=header["created"],
                probe=json.loads(header.get("probe") or "{}"),
                checksum=header["checksum"],
                extra={k[2:]: v for k, v in header.items() if k.startswith("x.")},
            )
        except (KeyError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"{source}: damaged metadata ({exc})") from exc


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a CPU tensor in memory order, read through ctypes: numpy is not a dependency
    (the CPU build of torch does not bring it), and a copy through `tolist()` would be slow."""
    t = t.detach().cpu().contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()) if t.numel() else b""


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(tensor_bytes(t))
    return digest.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Atomically write tensors with a string header as one safetensors file."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(Path(path), st_save(cpu, metadata=header))


def load_tensors(path: Path, with_tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read the header and (unless told not to, for menus) every tensor; any damage is a
    `CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file is missing")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()} if with_tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated ({exc})") from exc
    return tensors, header


def save_checkpoint(path: str | Path, model: Transformer, meta: CheckpointMeta, dtype: torch.dtype | None = None) -> CheckpointMeta:
    """Save the model's weights (optionally cast, e.g. fp16 for shipping) with their story and checksum."""
    tensors = {k: (v.to(dtype) if dtype is not None else v) for k, v in model.state_dict().items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta.config = model.config
    meta.checksum = tensors_checksum(tensors)
    save_tensors(Path(path), tensors, meta.to_header())
    return meta


def read_meta(path: str | Path) -> CheckpointMeta:
    """The story of a checkpoint without loading its tensors (for menus)."""
    _, header = load_tensors(Path(path), with_tensors=False)
    return CheckpointMeta.from_header(header, str(path))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Transformer, CheckpointMeta]:
    """Build the model a checkpoint describes and load it strictly; verify the checksum first."""
    path = Path(path)
    tensors, header = load_tensors(path)
    meta = CheckpointMeta.from_header(header, str(path))
    actual = tensors_checksum(tensors)
    if actual != meta.checksum:
        raise CheckpointError(f"{path}: checksum mismatch (stored {meta.checksum[:12]}, actual {actual[:12]}): the file was altered")
    model = Transformer(meta.config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, t in tensors.items():
        if t.shape != expected[name].shape:
            raise CheckpointError(f"{path}: tensor {name} has shape {tuple(t.shape)}, config needs {tuple(expected[name].shape)}")
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True)
    return model.to(device), meta

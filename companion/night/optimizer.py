"""The one place that owns optimizers: building them, scheduling them, stepping them, saving them.

The nursery and the night both train through these functions. Each phase builds its own optimizer
with `make_optimizer`; only the nursery saves and reloads its state (`save_optimizer_state`), into a
file nothing else reads. That is how a night can never silently inherit the pretraining learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from companion.model.checkpoint import CheckpointError, load_tensors, save_tensors
from companion.model.transformer import Transformer


def best_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_optimizer(model: Transformer, lr: float, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """A fresh AdamW: matrices decay, norms and embeddings' gains do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )


def lr_at(fraction: float, peak: float, warmup: float = 0.05, floor: float = 0.1) -> float:
    """Linear warmup over the first `warmup` of the run, then cosine decay to `floor * peak`."""
    fraction = min(max(fraction, 0.0), 1.0)
    if warmup > 0 and fraction < warmup:
        return peak * (fraction / warmup)
    progress = (fraction - warmup) / max(1e-9, 1 - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def pull_share(pull: float, lr: float, mean_lr: float) -> float:
    """The share of the way back toward the anchor taken after a step at `lr`: `pull` on average over
    a night's planned steps (whose mean learning rate is `mean_lr`), each step's in proportion to its
    learning rate, at most all the way.

    A pull toward the anchor is a weight decay toward it; taken at a constant share while the
    learning rate decays, the night's last steps, at a tenth of the peak, mostly pulled back: a
    second lesson night's answers were drawn whole less often at its 70th step (50-76%) than at the
    first night's end (70-88%), and its finish line spent its steps winning that back. In proportion
    to the learning rate (AdamW's decoupled decay, toward the anchor instead of zero) the night's end
    is where its training and the pull balance, whatever the schedule; the same mean keeps the same
    total pull (measured on the seedling, bench/lessons.py: four first nights said every fact in 20
    of 20 draws, true rates .958-.993, drift +2.6% to +2.9%, where the constant share gave 87-94 of
    100, rates .77-.94, +2.4%; but intrusion rose, .023-.049 of replies against .016-.021)."""
    if mean_lr <= 0:
        return min(1.0, pull)
    return min(1.0, pull * lr / mean_lr)


def train_step(
    model: Transformer,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor | Iterable[Callable[[], torch.Tensor | None]],
    lr: float,
    grad_clip: float = 1.0,
) -> float:
    """Backpropagate `loss`, clip, and step at `lr`; returns the loss's value. A non-finite loss is
    returned without stepping, so the caller's guard can refuse it before it touches the weights.

    `loss` may be a step's parts instead (functions that each build one part, or None for nothing):
    each is built and backpropagated before the next is built, so only one part's activations are
    held at a time (gradient accumulation: the step is the same, its memory that of its largest
    part). A non-finite part stops there with nothing stepped."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    value = 0.0
    for part in ([lambda: loss] if isinstance(loss, torch.Tensor) else loss):
        built = part()
        if built is None:
            continue
        value += float(built.detach())
        if not math.isfinite(value):
            optimizer.zero_grad(set_to_none=True)
            return value
        if built.requires_grad:
            built.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return value


@torch.no_grad()
def mean_loss(model: Transformer, windows: Sequence[torch.Tensor], batch_size: int = 8) -> float:
    """Mean next-token loss over fixed token windows (each of length block+1): the held-out measure."""
    if not windows:
        return float("nan")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        chunk = torch.stack(list(windows[i : i + batch_size])).to(device).long()
        _, loss = model(chunk[:, :-1], chunk[:, 1:])
        n = chunk.shape[0]
        total += float(loss) * n
        count += n
    model.train(was_training)
    return total / count


def save_optimizer_state(path: Path, model: Transformer, optimizer: torch.optim.AdamW, header: dict[str, str]) -> None:
    """The nursery's AdamW moments as safetensors (never pickle), keyed by parameter name."""
    names = {id(p): n for n, p in model.named_parameters()}
    tensors: dict[str, torch.Tensor] = {}
    for p, state in optimizer.state.items():
        name = names[id(p)]
        for key in ("exp_avg", "exp_avg_sq"):
            tensors[f"{key}.{name}"] = state[key]
        tensors[f"step.{name}"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    save_tensors(path, tensors, header)


def load_optimizer_state(path: Path, model: Transformer, optimizer: torch.optim.AdamW) -> dict[str, str]:
    """Restore the nursery's moments saved by `save_optimizer_state`; returns the file's header."""
    tensors, header = load_tensors(path)
    device = next(model.parameters()).device
    for name, p in model.named_parameters():
        if f"exp_avg.{name}" not in tensors:
            raise CheckpointError(f"{path}: no optimizer state for {name}")
        optimizer.state[p] = {
            "step": tensors[f"step.{name}"].reshape(()).clone(),
            "exp_avg": tensors[f"exp_avg.{name}"].to(device),
            "exp_avg_sq": tensors[f"exp_avg_sq.{name}"].to(device),
        }
    return header

"""One training step from a loss built in parts: the same step, the memory of its largest part."""

from __future__ import annotations

import copy
import math

import torch

from companion.night.optimizer import make_optimizer, train_step
from companion.model.transformer import Transformer
from tests.conftest import tiny_config


def _model() -> Transformer:
    torch.manual_seed(3)
    return Transformer(tiny_config())


def _batches(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return [torch.randint(0, 512, (4, 65), generator=g) for _ in range(n)]


def _loss(model: Transformer, batch: torch.Tensor) -> torch.Tensor:
    return model(batch[:, :-1], batch[:, 1:])[1]


class SavedBytes:
    """Counts the bytes autograd holds for backward (its saved tensors), live and at the peak."""

    def __init__(self) -> None:
        self.live = self.peak = 0

    def __enter__(self) -> SavedBytes:
        counter = self

        class Held:
            def __init__(self, t: torch.Tensor) -> None:
                self.t, self.n = t, t.numel() * t.element_size()
                counter.live += self.n
                counter.peak = max(counter.peak, counter.live)

            def __del__(self) -> None:
                counter.live -= self.n

        self._hooks = torch.autograd.graph.saved_tensors_hooks(Held, lambda held: held.t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def test_a_step_in_parts_moves_the_weights_as_one_loss_would():
    whole = _model()
    parted = copy.deepcopy(whole)
    batches = _batches(3)
    value = train_step(whole, make_optimizer(whole, 1e-3), sum(_loss(whole, b) for b in batches), 1e-3)
    parted_value = train_step(parted, make_optimizer(parted, 1e-3),
                              [lambda b=b: _loss(parted, b) for b in batches], 1e-3)
    assert math.isclose(value, parted_value, rel_tol=1e-5)
    for (name, a), (_, b) in zip(whole.named_parameters(), parted.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_step_in_parts_holds_only_one_part_for_backward_at_a_time():
    batches = _batches(4)
    model = _model()
    with SavedBytes() as one:
        train_step(model, make_optimizer(model, 1e-3), _loss(model, batches[0]), 1e-3)
    model = _model()
    with SavedBytes() as summed:
        train_step(model, make_optimizer(model, 1e-3), sum(_loss(model, b) for b in batches), 1e-3)
    model = _model()
    with SavedBytes() as parted:
        train_step(model, make_optimizer(model, 1e-3), [lambda b=b: _loss(model, b) for b in batches], 1e-3)
    assert summed.peak > 3.5 * one.peak
    assert parted.peak < 1.1 * one.peak


def test_a_part_that_is_not_finite_stops_the_step_with_the_weights_untouched():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    built = []

    def part(n):
        def build():
            built.append(n)
            loss = _loss(model, _batches(1)[0])
            return loss * float("nan") if n == 1 else loss
        return build

    value = train_step(model, make_optimizer(model, 1e-3), [part(0), part(1), part(2)], 1e-3)
    assert math.isnan(value) and built == [0, 1]
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.grad is None, n

"""A night trains in bfloat16 where the CPU does bfloat16 natively, and measures in float32 whatever it
trained in, so that its verdict never depends on the format; `[night] cpu_bfloat16 = false` keeps it
in float32 throughout. Tiny real models, a real night."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import companion.model.transformer as transformer
from companion.compute.precision import native_cpu_bfloat16, training_precision
from companion.night.pipeline import run_night
from companion.night.report import report_lines
from companion.store import Store
from tests.test_night import PROBE, night_settings, script_day

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_native = pytest.mark.skipif(not native_cpu_bfloat16(), reason="this CPU does no native bfloat16")


def products_of_a_night(home, tokenizer, **values):
    """The dtypes of every linear layer's output during a real night: those computed with gradients
    (the training steps) and those without (the probe, the recall, the guards); and the report."""
    seen: dict[str, set[torch.dtype]] = {"training": set(), "measuring": set()}

    def note(module, args, out):
        if isinstance(module, nn.Linear):
            seen["training" if torch.is_grad_enabled() else "measuring"].add(out.dtype)

    handle = nn.modules.module.register_module_forward_hook(note)
    try:
        with Store.open(home.store_path) as store:
            day, _ = script_day(home, store, tokenizer)
            report = run_night(home, store, day.id, night_settings(home, **values), "cpu", probe_windows=PROBE)
    finally:
        handle.remove()
    return seen, report


@needs_native
def test_on_a_cpu_with_native_bfloat16_the_steps_train_in_it_and_the_night_measures_in_float32(tiny_home, tokenizer):
    seen, report = products_of_a_night(tiny_home, tokenizer)
    assert report.status == "accepted", report.reason
    assert report.precision == "bfloat16"
    assert any(x.startswith("How long:") and x.endswith(", in bfloat16") for x in report_lines(report))
    assert seen["training"] == {torch.bfloat16}
    assert seen["measuring"] == {torch.float32}


def test_a_night_told_not_to_trains_in_float32_throughout(tiny_home, tokenizer):
    seen, report = products_of_a_night(tiny_home, tokenizer, **{"night.cpu_bfloat16": False})
    assert report.status == "accepted", report.reason
    assert report.precision == "float32"
    assert any(x.startswith("How long:") and x.endswith(", in float32") for x in report_lines(report))
    assert seen["training"] == seen["measuring"] == {torch.float32}


def test_a_cpu_night_trains_in_float32_where_bfloat16_is_not_native():
    expected = "bfloat16" if native_cpu_bfloat16() else "float32"
    assert training_precision(torch.device("cpu")) == expected
    assert training_precision(torch.device("cpu"), cpu_bfloat16=False) == "float32"


def test_under_cpu_bfloat16_autocast_attention_runs_in_float32_and_the_step_stays_close(tiny_model, monkeypatch):
    """The products gain from bfloat16 on such a CPU, PyTorch's CPU attention does not (slower
    backward): it is read in float32, and the logits stay within bfloat16's rounding of float32's."""
    dtypes: list[torch.dtype] = []
    real = F.scaled_dot_product_attention

    def attention(q, k, v, **kwargs):
        dtypes.append(q.dtype)
        return real(q, k, v, **kwargs)

    idx = torch.randint(0, tiny_model.config.vocab_size, (2, 24))
    with torch.no_grad():
        exact = tiny_model.project(tiny_model.hidden(idx)).float()
    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", attention)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = tiny_model.project(tiny_model.hidden(idx)).float()
    mixed.logsumexp(-1).sum().backward()
    assert dtypes and set(dtypes) == {torch.float32}
    assert (mixed - exact).abs().max() < 0.1 * exact.abs().max()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in tiny_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.parameters())

"""Checkpoints: bit-exact, atomic, and strict about damage."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from companion.model.checkpoint import CheckpointError, CheckpointMeta, load_checkpoint, read_meta, save_checkpoint, tensors_checksum


def test_save_and_load_are_bit_exact(tiny_model, tmp_path):
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, tiny_model, CheckpointMeta(tiny_model.config, reason="birth", step=12, day=3, probe={"ppl": 40.5}))
    model, meta = load_checkpoint(path)
    for (name, a), (_, b) in zip(tiny_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name
    assert (meta.reason, meta.step, meta.day, meta.probe, meta.config) == ("birth", 12, 3, {"ppl": 40.5}, tiny_model.config)
    assert meta.checksum == tensors_checksum(tiny_model.state_dict())


def test_a_truncated_checkpoint_is_refused_with_its_name(tiny_model, tmp_path):
    path = tmp_path / "cut.safetensors"
    save_checkpoint(path, tiny_model, CheckpointMeta(tiny_model.config, reason="birth"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(path)


def test_an_edited_checkpoint_fails_its_checksum(tiny_model, tmp_path):
    path = tmp_path / "edited.safetensors"
    save_checkpoint(path, tiny_model, CheckpointMeta(tiny_model.config, reason="birth"))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="edited.safetensors.*checksum"):
        load_checkpoint(path)


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="gone.safetensors.*missing"):
        read_meta(tmp_path / "gone.safetensors")


def test_a_save_killed_midway_leaves_the_previous_file_loadable(tiny_model, tmp_path):
    path = tmp_path / "w.safetensors"
    save_checkpoint(path, tiny_model, CheckpointMeta(tiny_model.config, reason="birth", step=1))
    # A second process starts saving bigger weights over the same path and is killed mid-write.
    script = textwrap.dedent(f"""
        import os, torch, model.checkpoint as ck
        from companion.model.transformer import Transformer
        from tests.conftest import tiny_config
        real_fsync = os.fsync
        def die(fd):
            os._exit(9)  # the process dies after writing the temp file, before the rename
        os.fsync = die
        m = Transformer(tiny_config(vocab_size={tiny_model.config.vocab_size}))
        ck.save_checkpoint({str(path)!r}, m, ck.CheckpointMeta(m.config, reason="night", step=2))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert proc.returncode == 9
    model, meta = load_checkpoint(path)
    assert meta.step == 1
    assert torch.equal(model.state_dict()["embed.weight"], tiny_model.state_dict()["embed.weight"])


def test_fp16_shipping_copy_loads_as_float32(tiny_model, tmp_path):
    path = tmp_path / "half.safetensors"
    save_checkpoint(path, tiny_model, CheckpointMeta(tiny_model.config, reason="seedling"), dtype=torch.float16)
    model, _ = load_checkpoint(path)
    assert model.embed.weight.dtype == torch.float32
    torch.testing.assert_close(model.embed.weight, tiny_model.embed.weight, atol=1e-3, rtol=1e-3)


def test_a_damaged_current_pointer_is_said_and_the_newest_checkpoint_loads(tiny_home):
    from companion.store import Store
    from companion.history.pointer import CURRENT_FILE
    from companion.history.weights import Weights

    with Store.open(tiny_home.store_path) as store:
        weights = Weights(tiny_home, store)
        newest = weights.save(weights.load_current().model, "nursery", step=1, make_current=False)
        (tiny_home.checkpoints_dir / CURRENT_FILE).write_text("{not json")
        loaded = weights.load_current()
    assert loaded.checkpoint.id == newest.id
    assert any("CURRENT is unreadable" in note for note in loaded.notes)
    with Store.open(tiny_home.store_path) as store:
        assert Weights(tiny_home, store).load_current().notes == []  # the pointer was mended

"""Exported companions run in other tools exactly as in ours: transformers reads the Hugging Face
folder, llama.cpp's own `gguf` reader reads the GGUF file, and `companion export` refuses what it must."""

from __future__ import annotations

import json
import os
import stat

import gguf
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from companion.cli import main
from companion.birth.corpus import starter_documents
from companion.transcript import encode_turns
from companion.model.checkpoint import load_checkpoint
from companion.model.interop.gguf import export_gguf, gguf_tensors, read_gguf
from companion.model.interop.hf import export_hf, read_hf
from companion.model.interop.tokenizer import CONTROL, NORMAL
from companion.model.transformer import Transformer
from tests.conftest import GOODNIGHT, GREETING, tiny_config

HARD_TEXTS = [
    "Hi 🙂🎉 — naïve café, 日本語 and Ελληνικά",
    "typed markup stays text: <|owner|> <|companion|><|end|> <|inner|> <|pad|>",
    "tabs\tand\t\tdouble tabs\n\nand newlines  with   spaces",
    "a" * 300,
    "ha" * 150 + " 1234567890 3.14159",
]


def formatted_days(tokenizer, block: int, count: int = 3) -> list[list[int]]:
    """Real starter conversations in our turn format, one block each."""
    docs = starter_documents(held_out=True, greeting=GREETING, goodnight=GOODNIGHT, limit=count)
    return [encode_turns(tokenizer, doc).ids[:block] for doc in docs]


def trained(model: Transformer, tokenizer, steps: int = 4) -> Transformer:
    """A few real optimizer steps on formatted days, so the weights are no longer at their init."""
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for ids in formatted_days(tokenizer, model.config.block_size, steps):
        x = torch.tensor([ids])
        _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        optim.step()
        optim.zero_grad()
    return model.eval()


@pytest.fixture()
def gqa_model(tokenizer, one_torch_thread) -> Transformer:
    torch.manual_seed(1)
    return trained(Transformer(tiny_config(vocab_size=tokenizer.vocab_size, n_kv_head=2)), tokenizer)


@pytest.mark.parametrize("kv_heads", [0, 2])
def test_a_hugging_face_export_gives_the_same_logits_in_transformers(tmp_path, tokenizer, kv_heads, one_torch_thread):
    torch.manual_seed(0)
    model = trained(Transformer(tiny_config(vocab_size=tokenizer.vocab_size, n_kv_head=kv_heads)), tokenizer)
    export_hf(model.state_dict(), model.config, tokenizer, tmp_path / "hf")
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    for ids in formatted_days(tokenizer, model.config.block_size):
        x = torch.tensor([ids])
        with torch.no_grad():
            delta = (model(x)[0] - theirs(x).logits).abs().max().item()
        assert delta <= 1e-4


def test_transformers_generates_the_same_greedy_tokens(tmp_path, tokenizer, gqa_model):
    export_hf(gqa_model.state_dict(), gqa_model.config, tokenizer, tmp_path / "hf")
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    prompt = formatted_days(tokenizer, 40, 1)[0]
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = theirs.generate(x, max_new_tokens=20, do_sample=False, eos_token_id=None, min_new_tokens=20)
        ours = x
        for _ in range(20):
            ours = torch.cat([ours, gqa_model(ours)[0][:, -1:].argmax(-1)], dim=1)
    assert out[0].tolist() == ours[0].tolist()


def test_the_exported_tokenizer_gives_our_ids_on_hard_text(tmp_path, tokenizer, tiny_model):
    export_hf(tiny_model.state_dict(), tiny_model.config, tokenizer, tmp_path / "hf")
    theirs = AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in HARD_TEXTS:
        ids = theirs(text)["input_ids"]
        assert ids == tokenizer.encode(text), text
        assert theirs.decode(ids, skip_special_tokens=True) == text
    role = tokenizer.role_ids["owner"]
    assert role not in theirs(HARD_TEXTS[1])["input_ids"]  # typed markup is never a role


def test_the_chat_template_formats_turns_as_we_do(tmp_path, tokenizer, tiny_model):
    export_hf(tiny_model.state_dict(), tiny_model.config, tokenizer, tmp_path / "hf")
    theirs = AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = theirs.apply_chat_template([{"role": "system", "content": "Morning."}, {"role": "user", "content": "Hi!"}],
                                      tokenize=False, add_generation_prompt=True)
    assert text == "<|inner|>Morning.<|end|><|owner|>Hi!<|end|><|companion|>"
    ids = theirs(text, split_special_tokens=False)["input_ids"]
    assert ids == [tokenizer.role_ids["inner"], *tokenizer.encode("Morning."), tokenizer.end_id,
                   tokenizer.role_ids["owner"], *tokenizer.encode("Hi!"), tokenizer.end_id, tokenizer.role_ids["companion"]]


def test_the_hf_folder_says_our_stop_tokens_and_reads_back_exactly(tmp_path, tokenizer, gqa_model):
    export_hf(gqa_model.state_dict(), gqa_model.config, tokenizer, tmp_path / "hf", card="# Scout\n")
    folder = tmp_path / "hf"
    gen = json.loads((folder / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == {tokenizer.end_id, *tokenizer.role_ids.values()}
    assert gen["bos_token_id"] is None
    assert (folder / "README.md").read_text() == "# Scout\n"
    config, state, _ = read_hf(folder)
    assert config == gqa_model.config
    assert all(torch.equal(state[k], v) for k, v in gqa_model.state_dict().items())
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}


def test_a_gguf_export_reads_back_every_tensor_and_the_vocabulary_exactly(tmp_path, tokenizer, gqa_model):
    path = export_gguf(gqa_model.state_dict(), gqa_model.config, tokenizer, tmp_path / "m.gguf", dtype="f32",
                       name="Scout", eos_id=tokenizer.end_id, pad_id=tokenizer.pad_id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reader = gguf.GGUFReader(path)
    expected = gguf_tensors(gqa_model.state_dict(), gqa_model.config)
    assert {t.name for t in reader.tensors} == set(expected)
    for t in reader.tensors:
        assert torch.equal(torch.from_numpy(t.data.copy()).reshape(expected[t.name].shape), expected[t.name]), t.name
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    vocab = tokenizer.raw.get_vocab(with_added_tokens=True)
    assert field("tokenizer.ggml.tokens") == sorted(vocab, key=vocab.get)
    types = field("tokenizer.ggml.token_type")
    assert {i for i, t in enumerate(types) if t == CONTROL} == set(tokenizer.special_ids)
    assert set(types) == {NORMAL, CONTROL}
    merges = json.loads(tokenizer.raw.to_str())["model"]["merges"]
    assert field("tokenizer.ggml.merges") == [" ".join(m) if isinstance(m, list) else m for m in merges]
    assert field("general.architecture") == "llama" and field("general.name") == "Scout"
    assert (field("tokenizer.ggml.model"), field("tokenizer.ggml.pre")) == ("gpt2", "gpt-2")
    assert field("tokenizer.ggml.add_bos_token") is False
    assert field("tokenizer.ggml.eos_token_id") == tokenizer.end_id
    assert field("llama.attention.head_count_kv") == 2 and "<|companion|>" in field("tokenizer.chat_template")
    # and our own import undoes the permutation: the same model, the same tokenizer
    config, state, raw = read_gguf(path)
    assert config == gqa_model.config
    assert all(torch.equal(state[k], v) for k, v in gqa_model.state_dict().items())
    from companion.model.tokenizer import Tokenizer

    assert all(Tokenizer(raw).encode(t) == tokenizer.encode(t) for t in HARD_TEXTS)


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_smaller_gguf_types_hold_exactly_what_gguf_quantises(tmp_path, tokenizer, gqa_model, dtype):
    import numpy as np

    path = export_gguf(gqa_model.state_dict(), gqa_model.config, tokenizer, tmp_path / "m.gguf", dtype=dtype,
                       eos_id=tokenizer.end_id, pad_id=tokenizer.pad_id)
    expected = gguf_tensors(gqa_model.state_dict(), gqa_model.config)
    qtype = gguf.GGMLQuantizationType.F16 if dtype == "f16" else gguf.GGMLQuantizationType.Q8_0
    for t in gguf.GGUFReader(path).tensors:
        want = expected[t.name].numpy()
        if want.ndim == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            continue
        assert t.tensor_type == qtype
        assert np.array_equal(gguf.quants.dequantize(t.data, t.tensor_type),
                              gguf.quants.dequantize(gguf.quants.quantize(want, qtype), qtype)), t.name


# -- the command --------------------------------------------------------------------------------------


def run(*args: str) -> int:
    return main(list(args))


def test_companion_export_writes_both_formats_with_a_model_card(tiny_home, tmp_path, capsys):
    root = str(tiny_home.path.parent)
    assert run("--home", root, "export", "--format", "hf", str(tmp_path / "scout-hf")) == 0
    assert run("--home", root, "export", "--format", "gguf", "--dtype", "q8_0", str(tmp_path / "scout.gguf")) == 0
    out = capsys.readouterr().out
    assert "exported checkpoint 1 of Scout as a Hugging Face folder (f32" in out
    assert "as a GGUF file (q8_0" in out
    card = (tmp_path / "scout-hf" / "README.md").read_text()
    assert "# Scout" in card and "days lived: 0" in card and "<|companion|>" in card
    assert gguf.GGUFReader(tmp_path / "scout.gguf").fields["general.name"].contents() == "Scout"


def test_an_existing_export_path_is_refused_unless_overwrite(tiny_home, tmp_path, capsys):
    root = str(tiny_home.path.parent)
    target = tmp_path / "scout.gguf"
    target.write_bytes(b"precious")
    assert run("--home", root, "export", "--format", "gguf", str(target)) == 2
    assert "already exists; give --overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"precious"
    assert run("--home", root, "export", "--format", "gguf", str(target), "--overwrite") == 0
    assert target.read_bytes()[:4] == b"GGUF"
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert run("--home", root, "export", "--format", "hf", str(folder)) == 2
    assert (folder / "notes.txt").read_text() == "mine"
    assert run("--home", root, "export", "--format", "gguf", str(folder), "--overwrite") == 2  # not a file
    assert "is not a file" in capsys.readouterr().err
    assert run("--home", root, "export", "--format", "hf", str(folder), "--overwrite") == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["companions", "hf", "scout.gguf"]  # nothing left aside


@pytest.mark.parametrize("args, message", [
    (["--format", "gguf", "--dtype", "q4_0"], "dtype 'q4_0' is not supported for gguf"),
    (["--format", "hf", "--dtype", "q8_0"], "dtype 'q8_0' is not supported for hf"),
    (["--format", "hf", "--checkpoint", "99"], "there is no checkpoint 99"),
])
def test_bad_export_requests_are_refused_and_write_nothing(tiny_home, tmp_path, capsys, args, message):
    assert run("--home", str(tiny_home.path.parent), "export", *args, str(tmp_path / "out")) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tiny_home.path.parent]


def test_a_damaged_checkpoint_is_named_and_nothing_is_exported(tiny_home, tmp_path, capsys):
    checkpoint = next((tiny_home.checkpoints_dir).glob("*.safetensors"))
    data = bytearray(checkpoint.read_bytes())
    data[-10] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    assert run("--home", str(tiny_home.path.parent), "export", "--format", "gguf", str(tmp_path / "x.gguf")) == 2
    assert checkpoint.name in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
def test_a_disk_that_fills_during_export_leaves_nothing_under_the_name(tiny_home, tmp_path, capsys, monkeypatch, fmt):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fmt == "gguf":
        real = gguf.GGUFWriter.write_kv_data_to_file

        def kv_then_full(self):  # the header and metadata land, then the disk is full
            real(self)
            full()

        monkeypatch.setattr(gguf.GGUFWriter, "write_kv_data_to_file", kv_then_full)
    else:
        monkeypatch.setattr("companion.model.interop.hf.save_file", full)
    out = tmp_path / "exports"
    out.mkdir()
    assert run("--home", str(tiny_home.path.parent), "export", "--format", fmt, str(out / "scout")) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert os.listdir(out) == []


def test_grouped_query_attention_generates_the_same_with_the_kv_cache(tokenizer, gqa_model):
    from companion.model.sampling import SamplingSettings, sample_candidates

    prompt = formatted_days(tokenizer, 40, 1)[0]
    greedy = SamplingSettings(temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0, max_new_tokens=20)
    [gen] = sample_candidates(gqa_model, prompt, 1, greedy, stop_ids=set())
    ours = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(20):
            ours = torch.cat([ours, gqa_model(ours)[0][:, -1:].argmax(-1)], dim=1)
    assert gen.tokens == ours[0, len(prompt):].tolist()


def test_every_older_checkpoint_loads_unchanged():
    from companion.home import SEEDLING_DIR
    from companion.model.checkpoint import load_tensors

    model, meta = load_checkpoint(SEEDLING_DIR / "seedling.safetensors")  # checksum verified
    assert meta.config.n_kv_head == 0 and meta.config.kv_heads == meta.config.n_head
    assert "n_kv_head" not in json.loads(load_tensors(SEEDLING_DIR / "seedling.safetensors", False)[1]["config"])
    assert "n_kv_head" not in json.loads(meta.config.to_json())  # saved as before

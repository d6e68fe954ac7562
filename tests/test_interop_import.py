"""A companion born from an open base computes what the base computed; our tokens are added without
changing any old id or logit; a base we cannot import exactly is refused and nothing is created."""

from __future__ import annotations

import copy
import json

import gguf
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

from companion.cli import main
from companion.home import Home
from companion.store import Store
from companion.history.weights import Weights
from companion.model.interop.gguf import export_gguf
from companion.model.interop.tokenizer import tokenizer_from_gguf
from companion.model.tokenizer import SPECIAL_TOKENS, Tokenizer
from companion.model.vocab import VocabError, add_tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE_TEXTS = [
    "Hello there, how are you doing today? I counted 1234 apples.",
    "The cat sat on the mat 🙂 and\tthen\tslept.",
    "z" * 200,
    "typed <|owner|> and <|end|> stay text",
]


@pytest.fixture(scope="module")
def base_tokenizer(tiny_texts) -> RawTokenizer:
    """A SmolLM2-style tokenizer of a stranger's making: digits one by one, then GPT-2's byte-level
    regex, its own special tokens and none of ours."""
    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(tiny_texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return raw


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, base_tokenizer):
    """A tiny grouped-query Llama made and saved by transformers itself, with its tokenizer.json."""
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=base_tokenizer.get_vocab_size(), hidden_size=64, intermediate_size=160,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    model = LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("base") / "tiny-llama"
    model.save_pretrained(folder)
    base_tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="module")
def base_model(base_folder):
    return LlamaForCausalLM.from_pretrained(base_folder, dtype=torch.float32).eval()


def base_ids(base_tokenizer, text: str) -> list[int]:
    return base_tokenizer.encode(text, add_special_tokens=False).ids


def born(tmp_path, source, name="Sol", *extra) -> Home:
    root = tmp_path / "companions"
    assert main(["--home", str(root), "birth", "--name", name, "--owner", "Trey", "--from-base", str(source),
                 "--block-size", "128", *extra]) == 0
    return Home.open(root, name)


def assert_same_logits(home, base_model, base_tokenizer):
    with Store.open(home.store_path) as store:
        loaded = Weights(home, store).load_current()
    ours, old_vocab = loaded.model, base_model.config.vocab_size
    assert ours.config.vocab_size == old_vocab + len(SPECIAL_TOKENS)
    assert ours.config.kv_heads == 2 and ours.config.rope_theta == 100000.0 and ours.config.block_size == 128
    for text in BASE_TEXTS:
        x = torch.tensor([base_ids(base_tokenizer, text)[:128]])
        with torch.no_grad():
            delta = (ours(x)[0][..., :old_vocab] - base_model(x).logits).abs().max().item()
        assert delta <= 1e-4, text
    return loaded


def test_a_transformers_llama_folder_is_born_into_a_companion_with_the_same_logits(tmp_path, base_folder, base_model,
                                                                                 base_tokenizer, capsys):
    home = born(tmp_path, base_folder)
    assert "Sol is born from" in capsys.readouterr().out
    loaded = assert_same_logits(home, base_model, base_tokenizer)
    assert loaded.checkpoint.reason == "import" and loaded.checkpoint.probe_ppl > 1
    tokenizer = Tokenizer.load(home.tokenizer_path)  # the base's tokenizer, ours forever
    for text in BASE_TEXTS[:3]:
        assert tokenizer.encode(text) == base_ids(base_tokenizer, text)
    assert tokenizer.role_ids["owner"] not in tokenizer.encode(BASE_TEXTS[3])


def test_a_gguf_base_with_a_smollm_tokenizer_is_born_the_same(tmp_path, base_folder, base_model, base_tokenizer):
    from companion.model.interop.hf import read_hf

    config, state, raw = read_hf(base_folder)
    path = export_gguf(state, config, raw, tmp_path / "tiny.gguf", dtype="f32", eos_id=0, pad_id=0)
    assert gguf.GGUFReader(path).fields["tokenizer.ggml.pre"].contents() == "smollm"
    home = born(tmp_path, path)
    assert_same_logits(home, base_model, base_tokenizer)
    tokenizer = Tokenizer.load(home.tokenizer_path)
    for text in BASE_TEXTS[:3]:
        assert tokenizer.encode(text) == base_ids(base_tokenizer, text)


def test_an_imported_companion_lives_a_day_and_a_night(tmp_path, base_folder):
    from companion.night.pipeline import run_night
    from tests.test_night import night_settings, script_day

    home = born(tmp_path, base_folder)
    tokenizer = Tokenizer.load(home.tokenizer_path)
    with Store.open(home.store_path) as store:
        day, _ = script_day(home, store, tokenizer)
        report = run_night(home, store, day.id, night_settings(home), "cpu", probe_windows=4)
        assert report.status in ("accepted", "rolled_back"), report.reason
        assert report.probe_before["ppl"] > 1 and report.total_steps > 0


def test_added_tokens_leave_old_ids_and_old_logits_unchanged(tokenizer, tiny_model):
    before = copy.deepcopy(tiny_model)
    grown = add_tokens(tiny_model, tokenizer, ["<|joy|>", "<|sorrow|>"], init_texts={"<|sorrow|>": "sad tears"})
    old = tokenizer.vocab_size
    assert grown.ids == {"<|joy|>": old, "<|sorrow|>": old + 1}
    assert grown.model.config.vocab_size == old + 2 and tokenizer.vocab_size == old  # the caller's tokenizer kept
    new = Tokenizer(grown.tokenizer)
    for text in BASE_TEXTS:
        assert new.encode(text) == tokenizer.encode(text)
        x = torch.tensor([tokenizer.encode(text)[:128]])
        with torch.no_grad():
            assert torch.equal(grown.model(x)[0][..., :old], before(x)[0])
    embed = grown.model.embed.weight.detach()
    joy = tokenizer.encode("<|joy|>")
    assert torch.allclose(embed[old], before.embed.weight[joy].mean(0))
    assert torch.allclose(embed[old + 1], before.embed.weight[tokenizer.encode("sad tears")].mean(0))
    assert new.encode("typed <|joy|>") == tokenizer.encode("typed <|joy|>")  # typed markup stays text


@pytest.mark.parametrize("tokens, message", [
    (["<|owner|>"], "already in the vocabulary"),
    (["<|a|>", "<|a|>"], "listed twice"),
    ([""], "empty token"),
])
def test_tokens_that_cannot_be_added_are_refused(tokenizer, tiny_model, tokens, message):
    with pytest.raises(VocabError, match=message):
        add_tokens(tiny_model, tokenizer, tokens)
    assert tiny_model.config.vocab_size == tokenizer.vocab_size


# -- bad bases ----------------------------------------------------------------------------------------


def refused(tmp_path, source, capsys, *fragments):
    root = tmp_path / "companions"
    assert main(["--home", str(root), "birth", "--name", "Sol", "--owner", "Trey", "--from-base", str(source)]) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err, err
    assert not (root / "Sol").exists()
    return err


def edited_folder(tmp_path, base_folder, **config_changes):
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(base_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(config_changes)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}, "architecture 'qwen2'"),
    ({"attention_bias": True}, "biases are not supported"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rotary scaling 'yarn'"),
    ({"hidden_act": "gelu"}, "activation 'gelu'"),
])
def test_an_unsupported_hf_folder_is_refused_naming_it(tmp_path, base_folder, capsys, changes, message):
    folder = edited_folder(tmp_path, base_folder, **changes)
    refused(tmp_path, folder, capsys, str(folder / "config.json"), message)


def test_a_folder_without_a_tokenizer_json_is_refused(tmp_path, base_folder, capsys):
    folder = edited_folder(tmp_path, base_folder)
    (folder / "tokenizer.json").unlink()
    refused(tmp_path, folder, capsys, "tokenizer.json", "cannot read the tokenizer")


def write_gguf(path, arch="llama", tokenizer_model="gpt2", extra_tensor=None, qtype=None):
    """A small GGUF written with llama.cpp's writer: one layer, odd choices on request."""
    writer = gguf.GGUFWriter(path, arch=arch)
    writer.add_context_length(64)
    writer.add_embedding_length(32)
    writer.add_block_count(1)
    writer.add_feed_forward_length(64)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre("gpt-2")
    tokens = [chr(ord("a") + i) for i in range(26)] + ["ab"]
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges(["a b"])
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (27, 32), "output_norm.weight": (32,), "blk.0.attn_norm.weight": (32,),
              "blk.0.ffn_norm.weight": (32,), "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (32, 32),
              "blk.0.attn_v.weight": (32, 32), "blk.0.attn_output.weight": (32, 32),
              "blk.0.ffn_gate.weight": (64, 32), "blk.0.ffn_up.weight": (64, 32), "blk.0.ffn_down.weight": (32, 64)}
    for name, shape in shapes.items():
        arr = rng.standard_normal(shape).astype(np.float32)
        if qtype is not None and name == "blk.0.ffn_up.weight":
            size = gguf.GGML_QUANT_SIZES[qtype]
            writer.add_tensor(name, np.zeros((shape[0], shape[1] // size[0] * size[1]), np.uint8), raw_dtype=qtype)
        else:
            writer.add_tensor(name, arr)
    if extra_tensor:
        writer.add_tensor(extra_tensor, np.zeros(32, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_small_well_formed_gguf_is_accepted(tmp_path, capsys):
    born_home = born(tmp_path, write_gguf(tmp_path / "ok.gguf"), "Tiny")
    assert Tokenizer.load(born_home.tokenizer_path).vocab_size == 27 + len(SPECIAL_TOKENS)


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "qwen2"}, "architecture 'qwen2' is not supported"),
    ({"extra_tensor": "blk.0.attn_q.bias"}, "biases are not supported"),
    ({"qtype": gguf.GGMLQuantizationType.Q8_1}, "quantisation Q8_1"),
    ({"tokenizer_model": "llama"}, "tokenizer model 'llama' cannot be reproduced"),
])
def test_an_unsupported_gguf_is_refused_naming_it(tmp_path, capsys, kwargs, message):
    path = write_gguf(tmp_path / "bad.gguf", **kwargs)
    refused(tmp_path, path, capsys, str(path), message)


def test_a_truncated_gguf_is_refused(tmp_path, capsys):
    path = write_gguf(tmp_path / "cut.gguf")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(tmp_path, path, capsys, str(path), "truncated")


def test_a_file_that_is_neither_gguf_nor_a_folder_is_refused(tmp_path, capsys):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x04pickle")
    refused(tmp_path, path, capsys, str(path), "neither a GGUF file nor a Hugging Face model folder")
    refused(tmp_path, tmp_path / "missing.gguf", capsys, "no such file")


def test_a_gguf_tokenizer_with_an_unknown_pre_tokenizer_is_refused():
    from companion.model.interop import InteropError

    with pytest.raises(InteropError, match="pre-tokenizer 'llama-bpe' cannot be reproduced"):
        tokenizer_from_gguf(["a"], [1], [], "gpt2", "llama-bpe", "x.gguf")


def test_a_companion_born_from_a_base_exports_back_to_both_formats(tmp_path, base_folder, base_tokenizer, base_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home = born(tmp_path, base_folder)
    root = str(home.path.parent)
    assert main(["--home", root, "export", "--format", "hf", str(tmp_path / "sol-hf")]) == 0
    assert main(["--home", root, "export", "--format", "gguf", "--dtype", "f32", str(tmp_path / "sol.gguf")]) == 0
    theirs = AutoTokenizer.from_pretrained(tmp_path / "sol-hf")
    tokenizer = Tokenizer.load(home.tokenizer_path)
    for text in BASE_TEXTS:
        assert theirs(text)["input_ids"] == tokenizer.encode(text)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sol-hf", dtype=torch.float32).eval()
    x = torch.tensor([base_ids(base_tokenizer, BASE_TEXTS[0])])
    with torch.no_grad():
        assert (model(x).logits[..., : base_model.config.vocab_size] - base_model(x).logits).abs().max() <= 1e-4
    reader = gguf.GGUFReader(tmp_path / "sol.gguf")
    assert reader.fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == tokenizer.vocab_size


def test_a_block_size_that_is_not_positive_is_refused(tmp_path, capsys):
    path = write_gguf(tmp_path / "ok.gguf")
    root = tmp_path / "companions"
    with pytest.raises(SystemExit) as refused:
        main(["--home", str(root), "birth", "--name", "Sol", "--owner", "Trey", "--from-base", str(path),
              "--block-size", "0"])
    assert refused.value.code == 2
    assert "--block-size: '0': the number of tokens must be more than 0" in capsys.readouterr().err
    assert not (root / "Sol").exists()

"""The tiny model: tokenizer, chat format and saved layout on a random-weight model, and the committed directory (no vLLM)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from backend.controllers.prompts import chat_messages, l1_exact_prompt
from backend.evaluation.arith import make_problems
from training.tiny.data import make_example
from training.tiny.evaluate import parse_output
from training.tiny.job import build_untrained
from training.tiny.tokenizer import encode_example, prompt_text
from training.traces import format_completion, make_trace


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_untrained(tmp_path_factory.mktemp("tiny") / "untrained", seed=0)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def test_directory_loads_with_auto_classes(model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = model.config
    assert cfg.model_type == "qwen2"
    assert cfg.hidden_size // cfg.num_attention_heads in (32, 64, 80, 96, 112, 128)  # vLLM CPU head sizes
    assert cfg.eos_token_id == tokenizer.eos_token_id == cfg.pad_token_id
    assert cfg.vocab_size >= len(tokenizer)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    weights = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    assert weights < 15_000_000
    ids = tokenizer("Compute 1 + 2.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], cfg.vocab_size)


def test_think_tags_and_wait_are_single_non_special_tokens(tokenizer):
    for text in ("<think>", "</think>", "Wait"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (text, ids)
    ids = tokenizer("7 = 7.\n</think>\n\nThe answer is \\boxed{7}.", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("</think>") in ids
    # not special: a detokenizer that skips special tokens (vLLM's default) keeps them
    assert "</think>" in tokenizer.decode(ids, skip_special_tokens=True)
    assert tokenizer.eos_token == "<|endoftext|>" == tokenizer.pad_token
    digits = tokenizer.convert_ids_to_tokens(tokenizer(" 1234", add_special_tokens=False)["input_ids"])
    assert digits[-4:] == ["1", "2", "3", "4"]


def test_chat_template_opens_the_think_block(tokenizer):
    user = l1_exact_prompt("Compute 2 + 3.", 64)
    text = tokenizer.apply_chat_template(chat_messages(user), add_generation_prompt=True, tokenize=False)
    assert text == f"<|user|>{user}<|end|><|assistant|><think>\n"
    assert text.endswith("<think>\n")
    no_gen = tokenizer.apply_chat_template(chat_messages(user), add_generation_prompt=False, tokenize=False)
    assert no_gen == f"<|user|>{user}<|end|>"


def test_saved_tokenizer_encodes_like_training(model_dir, tokenizer):
    """AutoTokenizer (hence vLLM) must encode exactly what the model was trained on."""
    rng = random.Random(0)
    for p in make_problems(3, 30):
        user, completion, _ = make_example(p, rng)
        ids, n_prompt = encode_example(tokenizer, user, completion)
        joint = tokenizer(prompt_text(tokenizer, user) + completion, add_special_tokens=False)["input_ids"]
        assert ids[:-1] == joint
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[n_prompt:-1]) == completion


def test_parse_output():
    p = make_problems(0, 1)[0]
    text = format_completion(make_trace(p, "steps", random.Random(0)), p.answer)
    assert parse_output(text) == (True, p.answer)
    assert parse_output("no think end \\boxed{3}") == (False, None)
    assert parse_output("x\n</think>\n\nThe answer is 3.") == (False, None)
    assert parse_output("x\n</think>\n\\boxed{-12}") == (True, -12)


COMMITTED = Path(__file__).resolve().parents[1] / "models" / "tiny-r1-base"


@pytest.mark.skipif(not (COMMITTED / "config.json").exists(), reason="models/tiny-r1-base not built")
def test_committed_model_directory():
    """The embedded default model: small, loadable, same chat format and single-id think tags."""
    import json

    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(COMMITTED)
    cfg = AutoConfig.from_pretrained(COMMITTED)
    assert cfg.model_type == "qwen2" and cfg.tie_word_embeddings
    assert sum(f.stat().st_size for f in COMMITTED.glob("*.safetensors")) < 15_000_000
    for text in ("<think>", "</think>"):
        assert len(tok(text, add_special_tokens=False)["input_ids"]) == 1
    text = tok.apply_chat_template(chat_messages("Compute 1 + 2."), add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|assistant|><think>\n")
    summary = json.loads((COMMITTED / "train_summary.json").read_text())
    assert summary["eval_greedy"]["format_rate"] >= 0.95
    assert (COMMITTED / "README.md").exists()

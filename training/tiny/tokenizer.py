"""The tiny model's tokenizer and chat format: a byte-level BPE fitted on the arith suite.

Digits are split one by one; ``<think>`` and ``</think>`` are added, non-special tokens, so vLLM
keeps them in the text and each is one id; the chat template's generation prompt opens the
thinking block, as DeepSeek-R1-Distill's does.

    tokenizer = build_tokenizer(tokenizer_corpus(seed=0))
    ids, n_prompt = encode_example(tokenizer, "Compute 2 + 3.", "...</think> The answer is \\boxed{5}.")
"""

from __future__ import annotations

from backend.controllers.prompts import THINK_END, THINK_START, chat_messages
from training.tiny.model import ModelShape

EOS = "<|endoftext|>"
SPECIAL_TOKENS = [EOS, "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}"
)

# transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX (copied: the model's tokenizer
# must not change if that module does).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_tokenizer(texts: list[str], vocab_size: int = 768):
    """A byte-level BPE tokenizer (digits one by one) wrapped as a transformers fast tokenizer."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # transformers 5 loads every qwen2 checkpoint's tokenizer as Qwen2Tokenizer, which rebuilds
    # the normalizer / pre-tokenizer / decoder below whatever tokenizer.json says; so the
    # tokenizer is trained with exactly that pipeline, and AutoTokenizer (hence vLLM) encodes as
    # training did. Its regex isolates every digit (`\p{N}`), as Digits(individual_digits=True) would.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # Like DeepSeek-R1-Distill: think tags are added tokens that are not special, so a
    # detokenizer that skips special tokens keeps them, and each is a single id.
    tok.add_tokens(
        [
            AddedToken(THINK_START, special=False, normalized=False),
            AddedToken(THINK_END, special=False, normalized=False),
        ]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = ModelShape.max_position_embeddings
    return fast


def prompt_text(tokenizer, user: str) -> str:
    return tokenizer.apply_chat_template(chat_messages(user), add_generation_prompt=True, tokenize=False)


def encode_example(tokenizer, user: str, completion: str) -> tuple[list[int], int]:
    """Token ids of prompt + completion + EOS, and the length of the prompt part."""
    p_ids = tokenizer(prompt_text(tokenizer, user), add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p_ids + c_ids, len(p_ids)


def token_ids(tokenizer) -> dict:
    def single(s):
        ids = tokenizer(s, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else ids

    return {
        "<think>": single(THINK_START),
        "</think>": single(THINK_END),
        "Wait": single("Wait"),
        " Wait": single(" Wait"),
        "eos": tokenizer.eos_token_id,
    }

"""The tiny model's shape (a narrow, deep Qwen2), and how it is built and saved.

    model = build_model(tokenizer, seed=0)
    save(model, tokenizer, Path("/tmp/tiny"))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    # Narrow and deep: on a 2-core CPU, depth (6 layers) and more heads (head_dim 32, a size
    # vLLM's CPU attention supports) made copying operands and then arithmetic emerge in far
    # fewer steps than 4 layers of 2 x 64-dim heads, or than 256 wide.
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 2048


def build_model(tokenizer, seed: int, shape: ModelShape = ModelShape()):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    eos = tokenizer.eos_token_id
    vocab = 64 * math.ceil(len(tokenizer) / 64)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        initializer_range=0.02,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    return model


def generation_config(tokenizer):
    from transformers import GenerationConfig

    eos = tokenizer.eos_token_id
    # DeepSeek-R1-Distill's recommended sampling; callers pass their own SamplingParams anyway.
    return GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=True, temperature=0.6, top_p=0.95
    )


def save(model, tokenizer, out_dir: Path) -> None:
    """Float32 safetensors (a few MB): exact weights for LCPO to start from; vLLM serves them
    in bf16 unless asked for float32."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)

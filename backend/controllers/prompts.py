"""Prompt texts of the L1 paper and its baselines, byte for byte.

The L1 release (cmu-l3/l1, scripts/data/deepscaler_dataset.py) builds the user
message as the question, one space, the DeepScaleR instruction, and then the
length instruction. These strings are the single source for the controllers
(backend/controllers/) and the LCPO trainer (training/), so that a model is
served with exactly the prompt it was trained on.

    >>> l1_exact_prompt("What is 2 + 3?", 128)
    "What is 2 + 3? Let's think step by step and output the final answer within \\\\boxed{}. Think for 128 tokens."
"""

from __future__ import annotations

# One backslash in the real string: "\\boxed{}" in Python source is "\boxed{}".
STEP_BY_STEP = "Let's think step by step and output the final answer within \\boxed{}."

THINK_START = "<think>"
THINK_END = "</think>"


def base_prompt(question: str) -> str:
    """The DeepScaleR prompt with no length instruction (s1, hard_cap, no_thinking, unconstrained)."""
    return f"{question} {STEP_BY_STEP}"


def l1_exact_prompt(question: str, budget: int) -> str:
    """L1-Exact: "Think for N tokens."."""
    return f"{base_prompt(question)} Think for {budget} tokens."


def l1_max_prompt(question: str, budget: int) -> str:
    """L1-Max: "Think for maximum N tokens."."""
    return f"{base_prompt(question)} Think for maximum {budget} tokens."


def chat_messages(user_text: str) -> list[dict[str, str]]:
    """The only message sent: a user turn, no system prompt (as in the L1 evaluation)."""
    return [{"role": "user", "content": user_text}]

"""The L1 prompt strings, byte for byte as in the L1 release's data scripts."""

from backend.controllers import prompts


def test_l1_exact_prompt_bytes():
    text = prompts.l1_exact_prompt("What is 2 + 3?", 512)
    expected = b"What is 2 + 3? Let's think step by step and output the final answer within \\boxed{}. Think for 512 tokens."
    assert text.encode() == expected
    assert text.count("\\") == 1  # one backslash, not two
    assert "? Let's" in text  # exactly one space before "Let's"


def test_l1_max_prompt_bytes():
    text = prompts.l1_max_prompt("Find x.", 1024)
    assert text.encode() == b"Find x. Let's think step by step and output the final answer within \\boxed{}. Think for maximum 1024 tokens."


def test_base_prompt_has_no_length_instruction():
    assert prompts.base_prompt("Q") == "Q Let's think step by step and output the final answer within \\boxed{}."


def test_chat_messages_is_a_single_user_turn():
    assert prompts.chat_messages("hi") == [{"role": "user", "content": "hi"}]

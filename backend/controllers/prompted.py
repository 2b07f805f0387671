"""Controllers that send one request: the L1 prompts, a hard cap, no thinking, and none.

- ``l1_exact``: the L1 prompt "... Think for N tokens." (the model obeys it if trained with LCPO);
- ``l1_max``: the L1 prompt "... Think for maximum N tokens.";
- ``hard_cap``: the plain prompt, generation truncated at N tokens;
- ``no_thinking``: a closed, empty thinking block prefilled; the answer gets N tokens;
- ``unconstrained``: the model as it is, with a generous cap.
"""

from __future__ import annotations

from backend.controllers import prompts
from backend.controllers.base import Controller
from backend.controllers.session import ModelSession


class L1Exact(Controller):
    name = "l1_exact"
    description = "L1 prompt: Think for N tokens."

    def user_text(self, question: str, budget: int) -> str:
        return prompts.l1_exact_prompt(question, budget)

    def max_tokens(self, budget: int) -> int:
        # Room to overshoot, so that length violations are measured rather than cut off.
        return max(2 * budget, budget + self.config.answer_max_tokens)


class L1Max(L1Exact):
    name = "l1_max"
    description = "L1 prompt: Think for maximum N tokens."

    def user_text(self, question: str, budget: int) -> str:
        return prompts.l1_max_prompt(question, budget)


class HardCap(Controller):
    name = "hard_cap"
    description = "Plain prompt, output truncated at N tokens."


class Unconstrained(Controller):
    name = "unconstrained"
    description = "Plain prompt, no budget (generous cap)."

    def max_tokens(self, budget: int) -> int:
        return self.config.unconstrained_max_tokens

    def min_room(self, budget: int) -> int:
        return 1


class NoThinking(Controller):
    name = "no_thinking"
    description = "Empty thinking block prefilled; N tokens for the answer."
    opens_thinking = False

    async def prompt_ids(self, session: ModelSession, user_text: str) -> list[int]:
        ids = await super().prompt_ids(session, user_text)
        start = session.tokens.think_start_ids
        # R1-style templates already open the block ("<think>\n"); others get it opened here.
        opened = any(ids[i : i + len(start)] == list(start) for i in range(max(0, len(ids) - len(start) - 2), len(ids)))
        prefill = "\n" + prompts.THINK_END + "\n\n" if opened else prompts.THINK_START + "\n\n" + prompts.THINK_END + "\n\n"
        return ids + list(await session.ids(prefill))

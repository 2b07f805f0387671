"""Controllers that send one request: the L1 prompts, a hard cap, no thinking, and none.

- ``l1_exact``: the L1 prompt "... Think for N tokens." (the model obeys it if trained with LCPO);
- ``l1_max``: the L1 prompt "... Think for maximum N tokens.";
- ``hard_cap``: the plain prompt, generation truncated at N tokens;
- ``no_thinking``: a closed, empty thinking block prefilled; the answer gets N tokens;
- ``thinking_cap``: the engine's own thinking cap (vLLM ``thinking_token_budget``): thinking at
  most N tokens, then the answer with ``answer_max_tokens``;
- ``unconstrained``: the model as it is, with a generous cap;
- ``api_budget``: a chat endpoint's own knob at N (only on endpoints: see `backend.serving.endpoints`).

On a chat endpoint (`ChatSession`) the L1 prompts, ``hard_cap`` (``max_completion_tokens`` = N)
and ``unconstrained`` send one chat request; the others refuse it with the reason.
"""

from __future__ import annotations

from backend.controllers import prompts
from backend.controllers.base import Controller, stream_into
from backend.controllers.live import LiveGeneration
from backend.controllers.session import BudgetError, ModelSession
from backend.serving.sampling import Sampling


class L1Exact(Controller):
    name = "l1_exact"
    description = "L1 prompt: Think for N tokens."
    budget_kind = "hint"
    budget_prompt = True
    chat_refusal = None

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
    chat_refusal = None  # max_completion_tokens = N


class Unconstrained(Controller):
    name = "unconstrained"
    description = "Plain prompt, no budget (generous cap)."
    budget_kind = "none"
    chat_refusal = None

    def max_tokens(self, budget: int) -> int:
        return self.config.unconstrained_max_tokens

    def min_room(self, budget: int) -> int:
        return 1


class NoThinking(Controller):
    name = "no_thinking"
    description = "Empty thinking block prefilled; N tokens for the answer."
    opens_thinking = False
    chat_refusal = "prefills a closed thinking block in the model's own turn, which a Chat Completions request cannot express"

    async def prompt_ids(self, session: ModelSession, user_text: str) -> list[int]:
        ids = await super().prompt_ids(session, user_text)
        start = session.tokens.think_start_ids
        # R1-style templates already open the block ("<think>\n"); others get it opened here.
        opened = any(ids[i : i + len(start)] == list(start) for i in range(max(0, len(ids) - len(start) - 2), len(ids)))
        prefill = "\n" + prompts.THINK_END + "\n\n" if opened else prompts.THINK_START + "\n\n" + prompts.THINK_END + "\n\n"
        return ids + list(await session.ids(prefill))


class ThinkingCap(Controller):
    name = "thinking_cap"
    description = "The engine's own thinking cap (vLLM thinking_token_budget): thinking at most N tokens, then the answer."
    chat_refusal = "is the served engine's thinking cap; on a chat endpoint its own knob is api_budget"

    async def unsupported(self, session: ModelSession) -> str | None:
        return await super().unsupported(session) or await session.thinking_budget_support()

    async def run_tokens(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        refusal = await self.unsupported(session)
        if refusal:
            raise BudgetError(f"thinking_cap: {refusal}")
        live.prompt = self.user_text(question, budget)
        prompt_ids = await self.prompt_ids(session, live.prompt)
        live.prompt_tokens = len(prompt_ids)
        max_tokens = budget + len(session.tokens.think_end_ids) + self.config.answer_max_tokens
        session.check_fits(len(prompt_ids), max_tokens, budget)
        # vLLM counts the thinking already open in the prompt ("<think>\n" of R1 templates) against
        # the budget; the app counts output tokens only, so those are added to keep N the output's.
        await stream_into(session, prompt_ids, max_tokens, sampling, live, in_thinking=True,
                          thinking_budget=budget + _open_thinking(prompt_ids, session.tokens.think_start_ids))
        live.finish()


class ApiBudget(Controller):
    name = "api_budget"
    description = "A chat endpoint's own budget knob at N (reasoning_effort, thinking budget_tokens, ...: see the endpoints file)."
    budget_kind = "hint"  # whether the endpoint enforces it is what `app.py audit` measures
    chat_refusal = None

    async def unsupported(self, session) -> str | None:
        if not session.is_chat:
            return "is a chat endpoint's own budget knob; on a served model use thinking_cap (the engine's cap) or hard_cap"
        if session.endpoint.knob == "none":
            return f"endpoint {session.endpoint.name} has no budget knob (knob = \"none\" in the endpoints file); use l1_exact or hard_cap"
        return None

    def chat_limits(self, budget: int) -> tuple[int, int | None]:
        # A cap that does not follow N (the unconstrained one, raised for a large N): were it 2N,
        # an ignored knob would still look as if the thinking followed N, cut off by the cap.
        return max(self.config.unconstrained_max_tokens, 2 * budget + self.config.answer_max_tokens), budget


def _open_thinking(prompt_ids: list[int], think_start_ids: tuple[int, ...]) -> int:
    """Prompt tokens after the last ``<think>`` (0 when the prompt opens no thinking)."""
    width = len(think_start_ids)
    for start in range(len(prompt_ids) - width, -1, -1):
        if width and tuple(prompt_ids[start : start + width]) == think_start_ids:
            return len(prompt_ids) - start - width
    return 0

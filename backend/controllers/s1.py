"""S1 budget forcing (Muennighoff et al., 2025): think for exactly N tokens, then answer.

Thinking is capped at N tokens; an early end of thinking is replaced by the wait text ("Wait",
up to ``s1_max_waits`` times) until N is reached; then the thinking is closed and the answer
forced ("Final Answer:"), with ``answer_max_tokens`` for it. Each turn is a continuation request
on the token ids so far, so the prefix cache makes it cheap.
"""

from __future__ import annotations

from backend.controllers.base import Controller, force_answer, forced_answer_opening, think_more
from backend.controllers.live import LiveGeneration
from backend.controllers.session import ModelSession
from backend.serving.sampling import Sampling


class S1BudgetForcing(Controller):
    name = "s1"
    description = "S1 budget forcing: cap thinking at N, append 'Wait' if it stops early, then force the answer."
    chat_refusal = "continues the thinking token by token and forces the answer, which a chat API cannot do; on an endpoint use api_budget"

    async def run_tokens(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        live.prompt = self.user_text(question, budget)
        prompt_ids = await self.prompt_ids(session, live.prompt)
        live.prompt_tokens = len(prompt_ids)
        close = await forced_answer_opening(session, self.config.s1_answer_prefix)
        wait_ids = list(await session.ids(self.config.s1_wait_text))
        session.check_fits(len(prompt_ids), budget + len(close[0]) + self.config.answer_max_tokens, budget)
        live.phase = "thinking"
        thinking_ids = await self._think(session, prompt_ids, budget, wait_ids, sampling, live)
        await force_answer(session, prompt_ids + thinking_ids, close, self.config.answer_max_tokens, sampling, live)
        live.finish()

    async def _think(self, session: ModelSession, prompt_ids: list[int], budget: int, wait_ids: list[int], sampling: Sampling, live: LiveGeneration) -> list[int]:
        """Generate thinking until exactly `budget` tokens, suppressing early ends with the wait text."""
        thinking_ids: list[int] = []
        while len(thinking_ids) < budget:
            ended = await think_more(session, prompt_ids, thinking_ids, budget - len(thinking_ids), sampling, live)
            if not ended or len(thinking_ids) >= budget:
                return thinking_ids  # reached the cap
            if live.waits_used >= self.config.s1_max_waits or budget - len(thinking_ids) < len(wait_ids):
                return thinking_ids  # the model is done and may not be pushed further
            thinking_ids += wait_ids
            live.waits_used += 1
            live.thinking_text += self.config.s1_wait_text
            live.thinking_tokens = len(thinking_ids)
        return thinking_ids  # the last wait text filled the budget exactly

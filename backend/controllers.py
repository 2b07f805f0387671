"""Budget controllers: six ways to spend a budget of N tokens on one question.

Each controller is a small strategy with one method, ``run(session, question,
budget, sampling, live)``, that fills in a `LiveGeneration` as tokens stream:

- ``l1_exact``: the L1 prompt "... Think for N tokens." (the model obeys it if trained with LCPO);
- ``l1_max``: the L1 prompt "... Think for maximum N tokens.";
- ``s1``: S1 budget forcing: thinking capped at N tokens; an early end of thinking
  is replaced by "Wait" (up to ``s1_max_waits`` times) until N is reached; then
  the thinking is closed and the answer forced ("Final Answer:");
- ``hard_cap``: the plain prompt, generation truncated at N tokens;
- ``no_thinking``: a closed, empty thinking block prefilled; the answer gets N tokens;
- ``unconstrained``: the model as it is, with a generous cap.

All of them talk to the server only through completions on token ids, so s1
works against any OpenAI-compatible vLLM server by continuation requests.

    controller = CONTROLLERS["s1"](ControllerConfig())
    await controller.run(session, "What is 2 + 3?", 128, Sampling(seed=0), live)
"""

from __future__ import annotations

from dataclasses import dataclass

from backend import prompts
from backend.client import Sampling
from backend.generation import LiveGeneration, ModelSession, StreamSplitter


@dataclass(frozen=True)
class ControllerConfig:
    s1_max_waits: int = 8
    s1_wait_text: str = "Wait"
    s1_answer_prefix: str = "Final Answer:"  # no trailing space: BPE attaches spaces to the next word
    answer_max_tokens: int = 256
    unconstrained_max_tokens: int = 8192

    def __post_init__(self) -> None:
        if self.s1_max_waits < 0:
            raise ValueError(f"s1_max_waits {self.s1_max_waits}: must be 0 or more")
        if not self.s1_wait_text:
            raise ValueError("s1_wait_text is empty: s1 needs a text to append, e.g. 'Wait'")
        if self.answer_max_tokens < 1 or self.unconstrained_max_tokens < 1:
            raise ValueError("answer_max_tokens and unconstrained_max_tokens must be positive numbers of tokens")


class Controller:
    name: str = ""
    description: str = ""
    opens_thinking = True  # the generation starts inside the thinking block

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config

    def user_text(self, question: str, budget: int) -> str:
        return prompts.base_prompt(question)

    def max_tokens(self, budget: int) -> int:
        """How many tokens the single request may generate."""
        return budget

    async def run(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        live.prompt = self.user_text(question, budget)
        prompt_ids = await self.prompt_ids(session, live.prompt)
        live.prompt_tokens = len(prompt_ids)
        room = session.tokens.max_model_len - len(prompt_ids)
        session.check_fits(len(prompt_ids), self.min_room(budget), budget)
        await stream_into(session, prompt_ids, min(self.max_tokens(budget), room), sampling, live, in_thinking=self.opens_thinking)
        live.finish()

    def min_room(self, budget: int) -> int:
        return budget

    async def prompt_ids(self, session: ModelSession, user_text: str) -> list[int]:
        return await session.chat_ids(user_text)


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


class S1BudgetForcing(Controller):
    name = "s1"
    description = "S1 budget forcing: cap thinking at N, append 'Wait' if it stops early, then force the answer."

    async def run(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        live.prompt = self.user_text(question, budget)
        prompt_ids = await self.prompt_ids(session, live.prompt)
        live.prompt_tokens = len(prompt_ids)
        answer_opening = "\n\n" + self.config.s1_answer_prefix
        close_ids = list(session.tokens.think_end_ids) + list(await session.ids(answer_opening))
        wait_ids = list(await session.ids(self.config.s1_wait_text))
        session.check_fits(len(prompt_ids), budget + len(close_ids) + self.config.answer_max_tokens, budget)
        live.phase = "thinking"
        thinking_ids = await self._think(session, prompt_ids, budget, wait_ids, sampling, live)
        # Close the thinking and force the answer; the inserted text is part of the output, so it is counted.
        live.delimiter_tokens = len(session.tokens.think_end_ids)
        live.answer_tokens = len(close_ids) - live.delimiter_tokens
        live.answer_text = answer_opening
        await stream_into(session, prompt_ids + thinking_ids + close_ids, self.config.answer_max_tokens, sampling, live, in_thinking=False)
        live.finish()

    async def _think(self, session: ModelSession, prompt_ids: list[int], budget: int, wait_ids: list[int], sampling: Sampling, live: LiveGeneration) -> list[int]:
        """Generate thinking until exactly `budget` tokens, suppressing early ends with the wait text."""
        end_id = session.tokens.think_end_id
        stop_ids = (end_id,) if end_id is not None else ()
        stop_text = () if end_id is not None else (prompts.THINK_END,)
        thinking_ids: list[int] = []
        while len(thinking_ids) < budget:
            remaining = budget - len(thinking_ids)
            ids, finish = [], None
            async for chunk in session.generate(prompt_ids + thinking_ids, remaining, sampling, stop_ids, stop_text):
                live.mark_first_token()
                ids.extend(chunk.token_ids)
                live.thinking_tokens = len(thinking_ids) + len(ids)
                live.thinking_text += chunk.text
                finish = chunk.finish_reason or finish
            if finish == "stop" and ids:
                ids.pop()  # the end of thinking (or EOS) that stopped it is not kept
                live.thinking_text = live.thinking_text.removesuffix(prompts.THINK_END)
            thinking_ids += ids
            live.thinking_tokens = len(thinking_ids)
            if finish != "stop" or len(thinking_ids) >= budget:
                return thinking_ids  # reached the cap
            if live.waits_used >= self.config.s1_max_waits or budget - len(thinking_ids) < len(wait_ids):
                return thinking_ids  # the model is done and may not be pushed further
            thinking_ids += wait_ids
            live.waits_used += 1
            live.thinking_text += self.config.s1_wait_text
            live.thinking_tokens = len(thinking_ids)
        return thinking_ids  # the last wait text filled the budget exactly


async def stream_into(session: ModelSession, prompt_ids: list[int], max_tokens: int, sampling: Sampling, live: LiveGeneration, in_thinking: bool) -> None:
    splitter = StreamSplitter(live, session.tokens.think_end_id, in_thinking)
    async for chunk in session.generate(prompt_ids, max_tokens, sampling):
        splitter.feed(chunk)
        if chunk.finish_reason:
            live.finish_reason = chunk.finish_reason


CONTROLLER_CLASSES: tuple[type[Controller], ...] = (L1Exact, L1Max, S1BudgetForcing, HardCap, NoThinking, Unconstrained)
CONTROLLERS: dict[str, type[Controller]] = {c.name: c for c in CONTROLLER_CLASSES}


def make_controller(name: str, config: ControllerConfig) -> Controller:
    try:
        return CONTROLLERS[name](config)
    except KeyError:
        raise ValueError(f"unknown controller {name!r}: choose from {', '.join(CONTROLLERS)}") from None

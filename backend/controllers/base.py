"""What every budget controller is: a config, a strategy with one ``run`` method, and streaming.

A controller spends a budget of N tokens on one question. It has one method, ``run(session,
question, budget, sampling, live)``, that fills in a `LiveGeneration` as tokens stream, and
talks to the server only through completions on token ids (`ModelSession.generate`), so that
multi-turn controllers (s1) work against any OpenAI-compatible vLLM server by continuation.

A new controller is a subclass of `Controller` in a module of this package (single-request ones
in `prompted.py`, multi-turn ones in their own module like `s1.py`), added to
`registry.CONTROLLER_CLASSES`; Compare, Sweep, ``app.py sweep`` and the API list it from there.

    controller = make_controller("s1", ControllerConfig())
    await controller.run(session, "What is 2 + 3?", 128, Sampling(seed=0), live)
"""

from __future__ import annotations

from backend.controllers import prompts
from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration, StreamSplitter
from backend.controllers.chat_session import ChatSession
from backend.controllers.session import BudgetError, ModelSession
from backend.serving.sampling import Sampling


# What a budget of N tokens means to a controller: a "hint" the model may overrun (the L1
# prompts), a "guaranteed" bound the controller enforces on the thinking or the output (a cap,
# budget forcing), or "none" (the model left alone).
BUDGET_KINDS = ("hint", "guaranteed", "none")


class Controller:
    name: str = ""
    description: str = ""
    budget_kind: str = "guaranteed"
    opens_thinking = True  # the generation starts inside the thinking block
    budget_prompt = False  # the prompt states the budget (meant for a model trained to follow it: L1)
    family = "sequential"  # how it spends N: sequential, parallel, verified or search (the Analytics lines' styles)
    # How a group's answer is chosen among its graded samples (backend.service.records applies the rule):
    # None for one generation; vote, confidence (answer log-probability), score (a verifier's) or score_vote.
    selection: str | None = None
    # How many jobs of its own a sweep gives it: 1 (the whole answer in one slot), or K for a group
    # whose samples each take a slot (open_group / run_sample / finish_group: backend.controllers.parallel).
    sample_jobs = 1
    # Why the controller cannot run on a chat endpoint (None: it can, as one chat request).
    chat_refusal: str | None = "needs token-level control of a served model, which a chat API does not give"

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config

    def user_text(self, question: str, budget: int) -> str:
        return prompts.base_prompt(question)

    def max_tokens(self, budget: int) -> int:
        """How many tokens the single request may generate."""
        return budget

    async def run(self, session: ModelSession | ChatSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        """Spend `budget` on `question`, filling in `live`: on token ids for a served model, one chat request on an endpoint."""
        if session.is_chat:
            await self.run_chat(session, question, budget, sampling, live)
        else:
            await self.run_tokens(session, question, budget, sampling, live)

    async def run_tokens(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        live.prompt = self.user_text(question, budget)
        prompt_ids = await self.prompt_ids(session, live.prompt)
        live.prompt_tokens = len(prompt_ids)
        room = session.tokens.max_model_len - len(prompt_ids)
        session.check_fits(len(prompt_ids), self.min_room(budget), budget)
        await stream_into(session, prompt_ids, min(self.max_tokens(budget), room), sampling, live, in_thinking=self.opens_thinking)
        live.finish()

    async def run_chat(self, session: ChatSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        refusal = await self.unsupported(session)
        if refusal:
            raise BudgetError(f"{self.name}: {refusal}")
        live.prompt = self.user_text(question, budget)
        max_tokens, knob_budget = self.chat_limits(budget)
        await session.respond(live, live.prompt, max_tokens, sampling, knob_budget)
        live.finish()

    def chat_limits(self, budget: int) -> tuple[int, int | None]:
        """On a chat endpoint: (max_completion_tokens, the budget for the endpoint's knob or None)."""
        return self.max_tokens(budget), None

    def min_room(self, budget: int) -> int:
        return budget

    async def unsupported(self, session: ModelSession | ChatSession) -> str | None:
        """Why this controller cannot run on ``session``'s engine, or None when it can."""
        return self.chat_refusal if session.is_chat else None

    async def prompt_ids(self, session: ModelSession, user_text: str) -> list[int]:
        return await session.chat_ids(user_text)

    def after_grading(self, live: LiveGeneration) -> None:
        """What the controller records once a generation's answer is known (early exit: where its probes settled)."""


async def stream_into(session: ModelSession, prompt_ids: list[int], max_tokens: int, sampling: Sampling, live: LiveGeneration, in_thinking: bool,
                      thinking_budget: int | None = None) -> None:
    splitter = StreamSplitter(live, session.tokens.think_end_id, in_thinking)
    async for chunk in session.generate(prompt_ids, max_tokens, sampling, thinking_budget=thinking_budget):
        splitter.feed(chunk)
        if chunk.finish_reason:
            live.finish_reason = chunk.finish_reason


async def forced_answer_opening(session: ModelSession, answer_prefix: str) -> tuple[list[int], str]:
    """The ids that close the thinking and open a forced answer (``</think>`` + "\n\nFinal Answer:"), and the opening's text."""
    opening = "\n\n" + answer_prefix
    return list(session.tokens.think_end_ids) + list(await session.ids(opening)), opening


async def force_answer(session: ModelSession, ids: list[int], close: tuple[list[int], str], max_tokens: int, sampling: Sampling,
                       live: LiveGeneration) -> None:
    """Close the thinking after `ids` with `close` (from `forced_answer_opening`) and stream the answer;
    the inserted text is part of the output, so it is counted."""
    close_ids, opening = close
    live.delimiter_tokens = len(session.tokens.think_end_ids)
    live.answer_tokens = len(close_ids) - live.delimiter_tokens
    live.answer_text = opening
    await stream_into(session, ids + close_ids, max_tokens, sampling, live, in_thinking=False)


async def think_more(session: ModelSession, prompt_ids: list[int], thinking_ids: list[int], max_tokens: int, sampling: Sampling,
                     live: LiveGeneration) -> bool:
    """Continue the thinking by at most `max_tokens`, streaming into `live`; the new ids are appended
    to `thinking_ids`. Returns True when the model ended its thinking (its ``</think>``, or EOS, is
    not kept: a multi-turn controller decides what comes next)."""
    end_id = session.tokens.think_end_id
    stop_ids = (end_id,) if end_id is not None else ()
    stop_text = () if end_id is not None else (prompts.THINK_END,)
    before, ids, finish = len(thinking_ids), [], None
    async for chunk in session.generate(prompt_ids + thinking_ids, max_tokens, sampling, stop_ids, stop_text):
        live.mark_first_token()
        ids.extend(chunk.token_ids)
        live.ids.extend(chunk.token_ids)
        live.thinking_tokens = before + len(ids)
        live.thinking_text += chunk.text
        finish = chunk.finish_reason or finish
    ended = finish == "stop"
    if ended and ids:
        ids.pop()
        live.thinking_text = live.thinking_text.removesuffix(prompts.THINK_END)
    thinking_ids += ids
    live.thinking_tokens = len(thinking_ids)
    return ended

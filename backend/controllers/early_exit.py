"""Early exit: stop thinking once the answer has settled (Dynasor / Certaindex, arXiv 2412.20993; DEER, 2504.15895).

Thinking is generated in chunks of ``early_exit_chunk`` tokens. After each chunk a probe asks for
the current answer: the thinking so far, closed with s1's forced-answer text ("</think>" and
"Final Answer:"), continued greedily for at most ``early_exit_probe_tokens`` tokens, its last
``\\boxed{}`` read as the answer. Each probe is a continuation of the same token ids, so the
engine's prefix cache serves its prefill. Thinking stops when the last ``early_exit_agree``
probes give the same answer (after a trivial normal form), when the model ends it, or at N
tokens; then the answer is generated as s1 forces it (or, after the model's own end, freely).

Probe tokens are compute, not output: they go to ``probe_tokens``, and each probe's position (the
thinking tokens before it) and answer to ``probes``.
"""

from __future__ import annotations

from dataclasses import replace

from backend.answers import extract_boxed, normalize_answer
from backend.controllers.base import Controller, force_answer, forced_answer_opening, stream_into, think_more
from backend.controllers.live import LiveGeneration
from backend.controllers.session import ModelSession
from backend.serving.sampling import Sampling


class EarlyExit(Controller):
    name = "early_exit"
    description = "Thinking in chunks; after each, a probe asks for the answer; stop once the probes agree (or at N), then answer."
    chat_refusal = "probes the answer between chunks of thinking, which needs token-level continuation; a chat API cannot do it"

    def after_grading(self, live: LiveGeneration) -> None:
        if live.probes:
            live.settled_at = settled_at(live.probes, live.extracted_answer)

    async def run_tokens(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        config = self.config
        live.prompt = self.user_text(question, budget)
        prompt_ids = await self.prompt_ids(session, live.prompt)
        live.prompt_tokens = len(prompt_ids)
        close = await forced_answer_opening(session, config.s1_answer_prefix)
        session.check_fits(len(prompt_ids), budget + len(close[0]) + max(config.answer_max_tokens, config.early_exit_probe_tokens), budget)
        live.phase = "thinking"
        thinking_ids, ended_by_model = await self._think(session, prompt_ids, close[0], budget, sampling, live)
        if ended_by_model:
            # The model closed its thinking itself: its own answer follows, as it would unprobed.
            end_ids = list(session.tokens.think_end_ids)
            live.delimiter_tokens = len(end_ids)
            await stream_into(session, prompt_ids + thinking_ids + end_ids, config.answer_max_tokens, sampling, live, in_thinking=False)
        else:
            await force_answer(session, prompt_ids + thinking_ids, close, config.answer_max_tokens, sampling, live)
        live.finish()

    async def _think(self, session: ModelSession, prompt_ids: list[int], close_ids: list[int], budget: int, sampling: Sampling,
                     live: LiveGeneration) -> tuple[list[int], bool]:
        """Thinking ids until the probes agree or `budget`; and whether the model ended it itself."""
        thinking_ids: list[int] = []
        while len(thinking_ids) < budget:
            before = len(thinking_ids)
            if await think_more(session, prompt_ids, thinking_ids, min(self.config.early_exit_chunk, budget - before), sampling, live):
                return thinking_ids, True
            if len(thinking_ids) >= budget or len(thinking_ids) == before:
                break
            live.probes.append((len(thinking_ids), await self._probe(session, prompt_ids + thinking_ids + close_ids, sampling, live)))
            if self._settled(live.probes):
                break
        return thinking_ids, False

    async def _probe(self, session: ModelSession, ids: list[int], sampling: Sampling, live: LiveGeneration) -> str | None:
        """The answer the model gives if made to answer now (greedy: the probe reads the model's
        belief, it does not sample one)."""
        text = ""
        async for chunk in session.generate(ids, self.config.early_exit_probe_tokens, replace(sampling, temperature=0.0, logprobs=False)):
            text += chunk.text
            live.probe_tokens += len(chunk.token_ids)
        answer = extract_boxed(text)
        return normalize_answer(answer) if answer else None

    def _settled(self, probes: list[tuple[int, str | None]]) -> bool:
        last = [answer for _, answer in probes[-self.config.early_exit_agree :]]
        return len(last) == self.config.early_exit_agree and last[0] is not None and all(a == last[0] for a in last)


def settled_at(probes: list[tuple[int, str | None]], final: str | None) -> int | None:
    """The thinking position from which every probe gave the final answer (the start of the last
    run of probes equal to it), or None when the last probe did not give it. The share of thinking
    after it is the "overthinking" figure of the early-exit papers."""
    if not final or not probes:
        return None
    final = normalize_answer(final)
    position = None
    for at, answer in reversed(probes):
        if answer != final:
            break
        position = at
    return position

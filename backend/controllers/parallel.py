"""Parallel controllers: K samples of a sequential controller, then one answer (``majK:INNER``, ``bestK:INNER``).

Test-time compute spent in width instead of length: self-consistency / majority vote (Wang et
al., 2022) and best-of-N, the baselines the L1 and s1 papers and the NoThinking paper
(arXiv 2504.09858) set against one long thought. ``maj4:l1_exact`` at N = 512 runs ``l1_exact``
four times at floor(512 / 4) = 128 tokens each, so N is the total budget of the answer whatever
the method; the four run at once and the engine batches them.

Which sample answers is decided after grading (``backend.service.records.settle``), not here:
``maj`` votes on answers put in classes of equivalent ones (math-verify), ties going to the
earliest sample; ``best`` takes the sample whose generated answer tokens have the highest mean
log-probability (the engine's logprobs). Each sample keeps its own record (``live.samples``) and
is stored as its own generation, so vote curves for any k <= K can be recomputed from the store.

    controller = make_controller("maj4:l1_exact", ControllerConfig())
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

from backend.controllers.base import Controller
from backend.controllers.live import LiveGeneration
from backend.controllers.search import score_sample, step_seed, verifier_of
from backend.controllers.session import BudgetError, ModelSession
from backend.serving.sampling import Sampling

MODES = {"maj": "majority vote", "best": "best-of", "prm": "best by verifier score", "pvote": "verifier-weighted vote"}
SELECTIONS = {"maj": "vote", "best": "confidence", "prm": "score", "pvote": "score_vote"}  # Controller.selection of each mode
VERIFIED_MODES = ("prm", "pvote")  # the modes whose answer a verifier's step scores decide
MAX_GROUP_SIZE = 64  # K of a majK / bestK group (not sweep_plan.MAX_SAMPLES, the samples per question)
NAME_RE = re.compile(r"(maj|best|prm|pvote)(\d+):([^@\s]+)(?:@(\S+))?")
REFRESH_S = 0.1  # how often the group's counters follow its samples while they stream


class ParallelController(Controller):
    def __init__(self, mode: str, k: int, inner: Controller, verifier_name: str | None = None) -> None:
        super().__init__(inner.config)
        self.mode, self.k, self.inner = mode, k, inner
        # prmK / pvoteK: the verifier that scores each sample's steps (attached by the service as `verifier`).
        self.verifier_name = verifier_name if mode in VERIFIED_MODES else None
        self.verifier = None
        self.family = "verified" if self.verifier_name else "parallel"
        self.selection = SELECTIONS[mode]
        self.sample_jobs = k
        self.name = f"{mode}{k}:{inner.name}" + (f"@{self.verifier_name}" if self.verifier_name else "")
        self.budget_kind = inner.budget_kind
        self.budget_prompt = inner.budget_prompt
        scored = f", scored step by step by {self.verifier_name}" if self.verifier_name else ""
        self.description = f"{MODES[mode]} over {k} samples of {inner.name}, each at floor(N/{k}) tokens{scored}."
        self.chat_refusal = inner.chat_refusal  # on an endpoint, K chat requests with their own seeds
        if self.verifier_name:
            self.chat_refusal = "a verifier scores the samples on the served model's own token ids, which a chat API does not give"

    async def unsupported(self, session) -> str | None:
        return await self.inner.unsupported(session)

    def after_grading(self, live: LiveGeneration) -> None:
        self.inner.after_grading(live)  # each sample as its inner controller records it

    async def run(self, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration) -> None:
        samplings = self.open_group(live, budget, sampling)
        tasks = [asyncio.create_task(self.run_sample(session, question, live, j, s)) for j, s in enumerate(samplings)]
        try:
            pending = set(tasks)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=REFRESH_S)
                sum_samples(live)
            for task in tasks:
                task.result()  # a failed sample fails the group: a vote over fewer samples would be another method
        finally:
            for task in tasks:
                task.cancel()
        await self.finish_group(session, question, live)

    # A sweep runs a group's samples as separate jobs (each one request slot, so that a slow sample
    # never holds three idle slots): open, every sample in any order, close.

    def open_group(self, live: LiveGeneration, budget: int, sampling: Sampling) -> list[Sampling]:
        """Set `live` up as a group of K samples at floor(N / K); return each sample's sampling."""
        share = budget // self.k
        if share < 1:
            raise BudgetError(f"budget {budget}: {self.name} splits it over {self.k} samples; give it at least {self.k} tokens")
        live.inner_budget = share
        live.phase = "thinking"
        live.samples = [self._sample_record(budget, j, share) for j in range(self.k)]
        return [replace(sampling, seed=seed, logprobs=sampling.logprobs or self.mode == "best") for seed in sample_seeds(sampling.seed, self.k)]

    async def run_sample(self, session: ModelSession, question: str, live: LiveGeneration, j: int, sampling: Sampling) -> None:
        """Generate sample `j` of the group (again from scratch, if it ran before and was lost)."""
        live.samples[j] = sample = self._sample_record(live.budget, j, live.inner_budget)
        await self.inner.run(session, question, live.inner_budget, sampling, sample)

    async def finish_group(self, session: ModelSession, question: str, live: LiveGeneration) -> None:
        """Every sample has ended: a verifier scores each one's steps (prmK, pvoteK), then the group's counts are summed."""
        if self.verifier_name:
            verifier = verifier_of(self)
            await asyncio.gather(*(score_sample(verifier, session, question, s, self.config.search_aggregation) for s in live.samples))
        live.prompt = live.samples[0].prompt
        sum_samples(live)
        live.finish()

    def _sample_record(self, budget: int, j: int, share: int) -> LiveGeneration:
        return LiveGeneration(controller=self.name, budget=budget, budget_kind=self.budget_kind, group_idx=j, inner_budget=share)


def sum_samples(live: LiveGeneration) -> None:
    """The group's counts are its samples' sums: what the answer cost."""
    samples = live.samples
    for name in ("prompt_tokens", "thinking_tokens", "answer_tokens", "delimiter_tokens", "probe_tokens", "verifier_tokens", "waits_used"):
        setattr(live, name, sum(getattr(s, name) for s in samples))
    ttfts = [s.ttft_s for s in samples if s.ttft_s is not None]
    live.ttft_s = min(ttfts) if ttfts else None
    live.thinking_text = "\n\n".join(f"[sample {s.group_idx + 1}/{len(samples)}] {s.thinking_text}" for s in samples)
    if any(s.phase == "answering" for s in samples) and live.phase == "thinking":
        live.phase = "answering"


def sample_seeds(seed: int | None, k: int) -> list[int | None]:
    """One seed per sample: the first is the group's own (so sample 0 is the sequential
    controller's draw at the same seed), the others derived from it."""
    if seed is None:
        return [None] * k
    return [seed, *(step_seed(seed, j) for j in range(1, k))]


def parse_parallel(name: str) -> tuple[str, int, str] | None:
    """("maj", 4, "l1_exact") for "maj4:l1_exact" (and ("prm", 4, "l1_exact") for "prm4:l1_exact@oracle");
    None for a name of another form."""
    match = NAME_RE.fullmatch(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), match.group(3)

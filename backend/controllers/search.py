"""What verifier-guided searches share: a tree grown a step at a time on the policy's token ids.

A step is a line: generation stops at the first token whose text holds a newline (the policy's
own ids, `LocalTokenizer.step_end_ids`), so the verifier scores exactly what the policy wrote.
`SearchRun` holds one search's state: the prompt (the inner controller's, at the per-path budget
B), the policy tokens left of the total budget N, and every node generated. `expand` grows a set
of paths by one step each, all at once (the engine batches them, and the prefix cache holds
their shared beginnings), and scores the new paths with the verifier; `finish` writes the chosen
path and the tree into the live record.

Budget: each level's expansions share what is left of N in equal parts, so the tree never
generates more than N policy tokens, whatever lengths the pruned steps had; a path also stops at
B tokens. A path still thinking when only its answer's room is left of what it may still write (what
is left of B, or its share of what is left of N) is closed: the app writes the end-of-thinking token
and the model its answer, as it was trained to, all counted in B and N (only where the end of
thinking is one token, the inner prompt opens thinking and B is at least four answers' room). An L1
model that runs a few tokens over its stated budget would otherwise be cut before it answers
(13-18% of particle filtering's answers were, in sweep search-eq; s1's "Final Answer:" opening
made the tiny model write "88}" instead of "\\boxed{88}"). The verifier's tokens are counted apart
(``verifier_tokens``).

    run = await SearchRun.open(controller, session, question, budget, sampling, live, paths=16)
    children = await run.expand([run.root] * 16, level=0)     # 16 first steps, scored
    run.finish(best)                                           # the chosen path becomes the answer
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from backend.controllers.base import Controller
from backend.controllers.live import LiveGeneration
from backend.controllers.session import BudgetError, ModelSession
from backend.serving.sampling import Sampling
from backend.steps import split_steps

# Inner controllers a search can take its prompt from: one request, the prompt decides the style.
SEARCH_INNER = ("l1_exact", "l1_max", "hard_cap", "no_thinking")
ANSWER_ROOM = 20  # tokens a closed path keeps for its answer ("\n\nThe answer is \\boxed{153}." and its end: 12 on l1-tiny)


def aggregate(scores: Sequence[float], how: str) -> float:
    """A path's score from its steps' scores: the last step's, the lowest, or their product."""
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    return float(math.prod(scores))


def prompt_budget(path_budget: int) -> int:
    """The budget a path's prompt states: a tenth under the path's hard limit B (at least 8 tokens under), so that a
    model that follows N loosely (an L1 model overshoots by a few percent) still writes its answer before the limit."""
    return max(1, path_budget - max(8, path_budget // 10))


def step_seed(seed: int | None, *keys: int) -> int | None:
    """A seed derived from ``seed`` and ``keys`` (a search's expansion, a parallel group's sample; None stays None: a random draw)."""
    if seed is None:
        return None
    text = "\x1f".join(str(k) for k in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class Path:
    """A partial solution: its steps (the policy's ids, each a line) and the node it ends at."""

    node: int | None = None  # None: the root (nothing generated yet)
    steps: list[list[int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # the verifier's, one per step, from the last scoring
    score: float = 1.0  # aggregated
    done: bool = False  # ended (EOS) or out of room
    ended: bool = False  # ended by the model itself (EOS), not cut at B
    in_thinking: bool = True

    @property
    def length(self) -> int:
        return sum(len(step) for step in self.steps)

    @property
    def ids(self) -> list[int]:
        return [i for step in self.steps for i in step]


class SearchController(Controller):
    """A controller whose answer a verifier picks: it names its verifier (``@oracle``, ``@tiny-prm``);
    the service attaches the verifier itself (``verifier``) before it runs."""

    budget_kind = "guaranteed"
    family = "search"
    chat_refusal = "a search generates step by step on token ids and scores each step, which a chat API does not allow"

    def __init__(self, inner: Controller, verifier_name: str) -> None:
        super().__init__(inner.config)
        self.inner, self.verifier_name = inner, verifier_name
        self.opens_thinking, self.budget_prompt = inner.opens_thinking, inner.budget_prompt
        self.verifier = None


def verifier_of(controller) -> object:
    verifier = getattr(controller, "verifier", None)
    if verifier is None:
        raise BudgetError(f"{controller.name}: no verifier was given to it (the service attaches {controller.verifier_name!r})")
    return verifier


class SearchRun:
    """One search's tree, budget and scoring (see the module docstring)."""

    def __init__(self, controller, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration,
                 path_budget: int, prompt_ids: list[int], close_ids: Sequence[int] = ()) -> None:
        self.controller, self.session, self.question, self.budget = controller, session, question, budget
        self.sampling, self.live, self.path_budget, self.prompt_ids = sampling, live, path_budget, prompt_ids
        # A thinking path is closed when this much of B is left (none: it is simply cut at B).
        self.close_ids = list(close_ids)
        self.answer_reserve = len(self.close_ids) + ANSWER_ROOM if self.close_ids else 0
        self.verifier = verifier_of(controller)
        self.tokenizer = session.tokenizer
        self.ends = tuple(sorted(self.tokenizer.step_end_ids))
        self.nodes: list[dict] = []
        self.spent = 0
        self.root = Path(in_thinking=controller.inner.opens_thinking)
        self.aggregation = controller.config.search_aggregation

    @classmethod
    async def open(cls, controller, session: ModelSession, question: str, budget: int, sampling: Sampling, live: LiveGeneration,
                   paths: int) -> SearchRun:
        """A search at total budget ``budget`` over ``paths`` paths' worth of tokens: each path gets floor(N / paths)."""
        if session.is_chat or getattr(session, "tokenizer", None) is None:
            raise BudgetError(f"{controller.name}: a search cuts steps on the served model's own token ids, which needs "
                              "its tokenizer files (a model served by this app or a vLLM server with a local copy)")
        path_budget = budget // paths
        if path_budget < 1:
            raise BudgetError(f"budget {budget}: {controller.name} shares it over {paths} paths; give it at least {paths} tokens")
        inner = controller.inner
        live.prompt = inner.user_text(question, prompt_budget(path_budget))
        prompt_ids = await inner.prompt_ids(session, live.prompt)
        live.prompt_tokens = len(prompt_ids)
        session.check_fits(len(prompt_ids), path_budget, path_budget)
        live.inner_budget = path_budget
        live.phase = "thinking"
        return cls(controller, session, question, budget, sampling, live, path_budget, prompt_ids, _closing_ids(controller, session, path_budget))

    async def expand(self, parents: Sequence[Path], level: int) -> list[Path]:
        """Each parent grown by one step (a parent listed twice grows twice), scored; [] when N is spent."""
        share = (self.budget - self.spent) // max(1, len(parents))
        if share < 1:
            return []
        jobs = [self._grow(parent, min(share, self.path_budget - parent.length), step_seed(self.sampling.seed, level, j))
                for j, parent in enumerate(parents)]
        children = [child for child in await asyncio.gather(*jobs) if child is not None]
        await self._score(children)
        self._show(children)
        return children

    async def _grow(self, parent: Path, room: int, seed: int | None) -> Path | None:
        """`parent` one step longer (at most `room` tokens): a line, or, for a path that has thought all
        its B allows, the forced close and the whole answer."""
        if parent.done:
            return None
        sampling = Sampling(self.sampling.temperature, self.sampling.top_p, seed)
        step_room = room - (self.answer_reserve if parent.in_thinking else 0)
        closing = step_room < 1 and parent.in_thinking and self.answer_reserve > 0 and room > len(self.close_ids)
        if step_room >= 1:
            room = min(step_room, self.controller.config.search_step_max_tokens)
            chunk = await self.session.client.complete(self.prompt_ids + parent.ids, room, sampling, stop_token_ids=self.ends)
            ids = list(chunk.token_ids)
        elif closing:
            chunk = await self.session.client.complete(self.prompt_ids + parent.ids + self.close_ids, room - len(self.close_ids), sampling)
            ids = self.close_ids + list(chunk.token_ids)
        else:
            return None
        if not ids:
            return None
        self.spent += len(ids)
        eos = self.tokenizer.eos_id
        ended = chunk.finish_reason == "stop" and ids[-1] not in self.ends
        text_ids = ids[:-1] if ended and ids[-1] == eos else ids
        child = Path(parent.node, parent.steps + [ids], parent.texts + [self.tokenizer.decode(text_ids)], in_thinking=parent.in_thinking)
        child.ended = ended
        child.done = ended or child.length >= self.path_budget
        self._count(child, ids, closing)
        return child

    def _count(self, child: Path, ids: list[int], closed: bool = False) -> None:
        """The step's tokens into the live counts (thinking, the delimiter, answer), and its node."""
        live, end_id = self.live, self.session.tokens.think_end_id
        if child.in_thinking and end_id is not None and end_id in ids:
            cut = ids.index(end_id)
            live.thinking_tokens += cut
            live.delimiter_tokens += 1
            live.answer_tokens += len(ids) - cut - 1
            child.in_thinking = False
        elif child.in_thinking:
            live.thinking_tokens += len(ids)
        else:
            live.answer_tokens += len(ids)
        depth = len(child.steps) - 1
        self.nodes.append({"id": len(self.nodes), "parent": child.node, "depth": depth, "tokens": len(ids), "text": child.texts[-1],
                           "score": None, "kept": True, "chosen": False, "done": child.done, "oracle": None,
                           "closed": closed})  # closed: its </think> written by the app (the path reached its limit thinking)
        child.node = len(self.nodes) - 1

    async def _score(self, children: Sequence[Path]) -> None:
        scored = await asyncio.gather(*(self.verifier.score(self.question, c.texts, [strip_eos(s, self.tokenizer.eos_id) for s in c.steps])
                                        for c in children))
        for child, result in zip(children, scored):
            child.scores = list(result.scores)
            child.score = aggregate(child.scores, self.aggregation)
            self.nodes[child.node]["score"] = round(child.scores[-1], 6) if child.scores else None
            self.live.verifier_tokens += result.tokens

    def prune(self, paths: Sequence[Path]) -> None:
        for path in paths:
            if path.node is not None:
                self.nodes[path.node]["kept"] = False

    def _show(self, children: Sequence[Path]) -> None:
        """The best path so far as the card's text while the search runs; the tree as it grows."""
        if children:
            best = max(children, key=lambda c: c.score)
            self.live.thinking_text = "".join(best.texts)
        self.live.mark_first_token()
        self.live.search_tree = list(self.nodes)

    def finish(self, chosen: Path | None) -> None:
        """The chosen path's text becomes the answer (split at the think delimiter); the tree is kept whole."""
        live = self.live
        node = chosen.node if chosen is not None else None
        while node is not None:
            self.nodes[node]["chosen"] = True
            node = self.nodes[node]["parent"]
        text = "".join(chosen.texts) if chosen is not None else ""
        thinking, sep, answer = text.partition("</think>")
        live.thinking_text, live.answer_text = thinking, answer if sep else ""
        if sep:
            live.phase = "answering"
        live.finish_reason = "stop" if chosen is not None and chosen.ended else "length"
        live.verifier_score = chosen.score if chosen is not None else None
        live.search_tree = list(self.nodes)
        live.finish()


def _closing_ids(controller, session: ModelSession, path_budget: int) -> list[int]:
    """What closes a path still thinking (the model's ``</think>``), or [] where the inner prompt does not open
    thinking, the model has no end-of-thinking token, or B is too short to keep room for an answer."""
    if not controller.inner.opens_thinking or session.tokens.think_end_id is None:
        return []
    close_ids = list(session.tokens.think_end_ids)
    return close_ids if 4 * (len(close_ids) + ANSWER_ROOM) <= path_budget else []


def best_path(paths: Sequence[Path]) -> Path | None:
    """The answer of a search: the best-scored path that ended by itself (a path cut at B has no answer), else the best-scored."""
    return max(paths, key=lambda c: (c.ended, c.score)) if paths else None


def strip_eos(step: Sequence[int], eos: int | None) -> list[int]:
    """A step's ids without the end-of-sequence token (the verifier reads what was written)."""
    return list(step[:-1]) if step and eos is not None and step[-1] == eos else list(step)


async def score_sample(verifier, session: ModelSession, question: str, sample: LiveGeneration, aggregation: str) -> None:
    """A finished sample's steps (its own generated ids cut at line ends) scored by `verifier`: its
    aggregated score, its steps as a chain of nodes, the verifier tokens read."""
    tokenizer = getattr(session, "tokenizer", None)
    if tokenizer is None:
        raise BudgetError(f"{sample.controller}: scoring steps needs the served model's tokenizer files (its own token ids)")
    steps = split_steps(strip_eos(sample.ids, tokenizer.eos_id), tokenizer.step_end_ids)
    if not steps:
        sample.verifier_score, sample.search_tree = 0.0, []
        return
    texts = [tokenizer.decode(step) for step in steps]
    result = await verifier.score(question, texts, steps)
    sample.verifier_tokens += result.tokens
    sample.verifier_score = aggregate(result.scores, aggregation)
    sample.search_tree = [{"id": i, "parent": i - 1 if i else None, "depth": i, "tokens": len(step), "text": text, "score": round(score, 6),
                           "kept": True, "chosen": False, "done": i == len(steps) - 1, "oracle": None}
                          for i, (step, text, score) in enumerate(zip(steps, texts, result.scores))]

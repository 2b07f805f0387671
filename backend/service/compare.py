"""One question at several budgets and controllers, all generating at once.

`parse_compare_request` turns loose user input (from the UI, the API or a
script) into a validated `CompareRequest`, or raises `InputError` with a
message that says what to fix. `run_columns` runs every (controller, budget)
column concurrently against one model session and yields snapshots while
they stream; each finished column is graded and handed to `on_done` (the
service stores it) before it is shown as done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from backend.controllers.chat_session import ChatSession
from backend.controllers.config import ControllerConfig
from backend.controllers.live import LiveGeneration
from backend.controllers.registry import budget_split, make_controller, naming_verifier
from backend.controllers.session import BudgetError, ModelSession
from backend.errors import InputError
from backend.service.inputs import parse_budgets, parse_controllers, parse_seed
from backend.service.trained_range import TrainedBudgets, flag_fields
from backend.service.verifying import with_verifier
from backend.serving.client import EngineRequestError
from backend.serving.engine import EngineUnavailable
from backend.serving.sampling import Sampling

MAX_QUESTION_CHARS = 20_000
FIRST_TOKEN_TICK_S = 0.05


@dataclass(frozen=True)
class CompareRequest:
    question: str
    model: str
    budgets: tuple[int, ...]
    controllers: tuple[str, ...]
    gold: str | None = None
    seed: int | None = None
    other_model: str | None = None  # a second model whose cards sit next to the first's (another served model, an endpoint's)
    each_on_its_model: bool = True  # with two models: L1 prompts on the L1 model, plain ones on the other (service.pairing)
    # Each model's controllers once the models are resolved (`pairing.assign`); None: every controller on every model.
    assigned: tuple[tuple[str, tuple[str, ...]], ...] | None = None

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model, self.other_model) if self.other_model else (self.model,)

    @property
    def columns(self) -> list[tuple[str, str, int]]:
        on = dict(self.assigned) if self.assigned else {}
        return [(m, c, b) for m in self.models for c in on.get(m, self.controllers) for b in self.budgets]


def parse_compare_request(question, model, budgets, controllers, gold=None, seed=None, other_model=None, each_on_its_model=True, *,
                          max_columns: int, verifier: str | None = None) -> CompareRequest:
    """`verifier`: the verifier of each verifier-guided controller that names none (``beam4x4`` -> ``beam4x4@oracle``);
    None leaves them to the search_verifier setting."""
    question = (question or "").strip()
    if not question:
        raise InputError("the question is empty: type a question or pick an example")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question is {len(question)} characters long: at most {MAX_QUESTION_CHARS} are accepted")
    if not (model or "").strip():
        raise InputError("no model chosen: pick a model")
    request = CompareRequest(
        question=question,
        model=model.strip(),
        budgets=parse_budgets(budgets),
        controllers=tuple(dict.fromkeys(naming_verifier(name, (verifier or "").strip()) for name in parse_controllers(controllers))),
        gold=(str(gold).strip() or None) if gold is not None else None,
        seed=parse_seed(seed),
        other_model=(str(other_model).strip() or None) if other_model else None,
        each_on_its_model=bool(each_on_its_model),
    )
    if request.other_model == request.model:
        raise InputError(f"model {request.model!r} is chosen twice: pick another model to compare against, or none")
    if len(request.columns) > max_columns:
        models = f" x {len(request.models)} models" if request.other_model else ""
        raise InputError(f"{len(request.columns)} columns ({len(request.controllers)} controllers x {len(request.budgets)} budgets{models}): "
                         f"at most {max_columns} at once")
    return request


async def check_supported(session: ModelSession, controllers: Iterable[str], config: ControllerConfig) -> None:
    """Refuse a controller the serving engine cannot run (thinking_cap without a reasoning parser),
    with the reason: never a silent fallback to another method."""
    for name in controllers:
        refusal = await make_controller(name, config).unsupported(session)
        if refusal:
            raise InputError(f"{name}: {refusal}")


def check_budgets_fit(session: ModelSession, budgets: Iterable[int], controllers: Iterable[str] = ()) -> None:
    """Refuse a budget one generation could not hold: N itself for a sequential controller, N/K for one that
    splits it (``maj4:l1_exact``, ``beam4x4``: each request is asked for its share)."""
    limit = session.tokens.max_model_len
    splits = {name: budget_split(name) or 1 for name in controllers} or {"": 1}
    for budget in budgets:
        for name, split in splits.items():
            if budget // split >= limit:
                per = f" ({name} asks each of its {split} generations for {budget // split})" if split > 1 else ""
                raise InputError(f"budget {budget}{per}: larger than the model's context of {limit} tokens")


async def run_columns(
    sessions: Mapping[str, ModelSession | ChatSession],
    request: CompareRequest,
    config: ControllerConfig,
    sampling: Sampling,
    on_done: Callable[[LiveGeneration], Awaitable[None]],
    tick_s: float = 0.25,
    ranges: Mapping[str, TrainedBudgets | None] | None = None,
    verifiers: dict | None = None,
) -> AsyncIterator[list[LiveGeneration]]:
    """Run all columns at once (`sessions`: each model's); yield the live records every `tick_s` and once at the end.
    A controller a model's engine cannot run fails its column with the reason; the others run. `ranges`: each
    model's trained budgets; a column whose generations are asked for a budget outside them says so. `verifiers`:
    the verifiers of the verifier-guided controllers, by name (`backend.service.verifying.held_verifiers`)."""
    controllers = {name: with_verifier(make_controller(name, config), verifiers or {}) for name in request.controllers}
    ranges = ranges or {}
    lives = [LiveGeneration(controller=c, budget=b, budget_kind=controllers[c].budget_kind, model=m, **flag_fields(m, ranges.get(m), c, b))
             for m, c, b in request.columns]

    async def one(live: LiveGeneration) -> None:
        try:
            session = sessions[live.model]
            refusal = await controllers[live.controller].unsupported(session)
            if refusal:
                raise BudgetError(f"{live.controller} on {live.model}: {refusal}")
            await controllers[live.controller].run(session, request.question, live.budget, sampling, live)
            await on_done(live)
        except (BudgetError, EngineUnavailable, EngineRequestError, InputError) as exc:
            live.fail(str(exc))
        except Exception as exc:  # a column must never take the others down
            live.fail(f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(one(live)) for live in lives]
    shown = None
    try:
        while not all(t.done() for t in tasks):
            # Until the first token shows, look often (it reaches the page up to a tick sooner); and
            # send a snapshot only when something changed: with twenty viewers, unchanged snapshots
            # kept the queue busy and delayed the ones that mattered.
            await asyncio.wait(tasks, timeout=tick_s if any(live.total_tokens for live in lives) else FIRST_TOKEN_TICK_S)
            state = [(live.phase, live.total_tokens, live.probe_tokens, len(live.answer_text), len(live.search_tree)) for live in lives]
            if state != shown:
                shown = state
                yield lives
    finally:
        for task in tasks:
            task.cancel()
    yield lives

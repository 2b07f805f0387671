"""The first run: the L1 paper's figures reproduced on the embedded model, offered while no sweep is stored.

A new install's Analytics tab has nothing to draw. This preset fills it with what the L1 paper's
figures show: the LCPO model's two prompts (``l1_exact``, ``l1_max``) across its trained budget
range, against S1 budget forcing on the model it was trained from (``s1`` on the base model),
on the built-in arith questions, with enough questions for the accuracy bands to mean something
and few enough to take minutes on 2 cores. It is two sweeps (the models differ in controllers),
stored like any other; Analytics then draws them.

    plan = first_run_plan(service)
    for request in plan.requests:
        await service.sweep(request, on_progress=print)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from backend.service.sweep_plan import SweepRequest, parse_sweep_request

@dataclass(frozen=True)
class FirstRunPlan:
    requests: tuple[SweepRequest, ...]
    description: str  # one paragraph for the button's box

    @property
    def runs(self) -> list[str]:
        return [request.run for request in self.requests]


def first_run_plan(service, stamp: str | None = None) -> FirstRunPlan:
    """The sweeps reproducing the L1 figures on the service's default model (and its base, when it is known and registered)."""
    spec = service.resolve_model(service.default_model)
    budgets = ",".join(str(b) for b in spec.budgets)
    stamp = stamp or f"{dt.datetime.now():%Y%m%d-%H%M%S}"
    questions = service.first_run_questions
    requests = [parse_sweep_request(models=spec.name, dataset="arith", controllers="l1_exact,l1_max", budgets=budgets, limit=questions,
                                    run=f"l1-figures-{stamp}")]
    base_spec = service.base_of(spec)  # None when not registered here: the L1 model's two prompts alone
    if base_spec is not None:
        requests.append(parse_sweep_request(models=base_spec.name, dataset="arith", controllers="s1", budgets=budgets, limit=questions,
                                            run=f"l1-figures-{stamp}-base"))
    against = f", against `s1` on its base model **{base_spec.name}**" if base_spec else ""
    description = (f"`l1_exact` and `l1_max` on **{spec.name}**{against}, at N = {budgets.replace(',', ', ')} tokens, on {questions} "
                   f"built-in arith questions ({sum(len(r.controllers) * len(r.budgets) * questions for r in requests)} generations).")
    return FirstRunPlan(tuple(requests), description)

"""Which model each method runs on when several models are compared or swept together.

The L1 paper's comparison puts L1 (the budget prompts, on the model trained with LCPO to follow
them) next to s1, caps and NoThinking (plain prompts, on the base it was trained from): a plain-
prompt method on an L1 model, or an L1 prompt on a base, measures a pairing nobody would deploy
(l1-tiny reasons only under the L1 prompt: s1 on it scored 0-4%). With ``each_on_its_model``,
a method whose prompt states the budget (``l1_exact``, ``l1_max`` and their parallel forms) runs
on the models that follow such prompts, the others on the models that do not; when every model
is of one kind, or one is a chat endpoint's (a hosted model has budget knobs of its own), every
method runs on every model.

    assign(["l1_exact", "s1"], [l1_tiny, tiny_r1_base])
    # {"l1-tiny": ("l1_exact",), "tiny-r1-base": ("s1",)}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from backend.controllers.config import ControllerConfig
from backend.controllers.registry import make_controller
from backend.serving.registry import ModelSpec


def states_budget(controller: str) -> bool:
    """Whether the method's prompt states the budget (meant for a model trained to follow it)."""
    return make_controller(controller, ControllerConfig()).budget_prompt


def assign(controllers: Iterable[str], specs: Sequence[ModelSpec], each_on_its_model: bool = True) -> dict[str, tuple[str, ...]]:
    """Each model's controllers, in the order given (see the module docstring)."""
    controllers = tuple(controllers)
    if not each_on_its_model or len(specs) < 2 or any(spec.chat is not None for spec in specs):
        return {spec.name: controllers for spec in specs}
    kinds = {spec.name: spec.follows_budget_prompts for spec in specs}
    if len(set(kinds.values())) < 2:
        return {spec.name: controllers for spec in specs}
    return {name: tuple(c for c in controllers if states_budget(c) == follows) for name, follows in kinds.items()}

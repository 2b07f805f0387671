"""The controllers by name: what Compare, Sweep, ``app.py sweep`` and the API offer.

Sequential controllers have a name each; parallel ones are written ``majK:INNER`` or
``bestK:INNER`` over a sequential one (``maj4:l1_exact``, ``best8:hard_cap``).

    controller = make_controller("l1_exact", ControllerConfig())
    make_controller("maj4:no_thinking", ControllerConfig()).budget_kind   # 'guaranteed'
    list(CONTROLLERS)   # ['l1_exact', 'l1_max', 's1', 'hard_cap', 'no_thinking', 'thinking_cap', 'early_exit', 'unconstrained', 'api_budget']
"""

from __future__ import annotations

from backend.controllers.base import Controller
from backend.controllers.config import ControllerConfig
from backend.controllers.early_exit import EarlyExit
from backend.controllers.parallel import MAX_GROUP_SIZE, MODES, ParallelController, parse_parallel
from backend.controllers.prompted import ApiBudget, HardCap, L1Exact, L1Max, NoThinking, ThinkingCap, Unconstrained
from backend.controllers.s1 import S1BudgetForcing

CONTROLLER_CLASSES: tuple[type[Controller], ...] = (L1Exact, L1Max, S1BudgetForcing, HardCap, NoThinking, ThinkingCap, EarlyExit, Unconstrained,
                                                    ApiBudget)
CONTROLLERS: dict[str, type[Controller]] = {c.name: c for c in CONTROLLER_CLASSES}
# Parallel forms offered in the forms' lists (any majK:INNER / bestK:INNER may be typed or sent).
SUGGESTED_PARALLEL = ("maj4:l1_exact", "best4:l1_exact", "maj4:no_thinking")


def controller_names() -> list[str]:
    """The names the forms offer: every sequential controller, then the suggested parallel forms."""
    return [*CONTROLLERS, *SUGGESTED_PARALLEL]


def make_controller(name: str, config: ControllerConfig) -> Controller:
    """The controller called `name`, or ValueError saying what names are valid."""
    if name in CONTROLLERS:
        return CONTROLLERS[name](config)
    parallel = parse_parallel(name)
    if parallel is None:
        raise ValueError(f"unknown controller {name!r}: choose from {', '.join(CONTROLLERS)}, or a parallel form "
                         f"majK:INNER / bestK:INNER such as maj4:l1_exact")
    mode, k, inner = parallel
    if not 2 <= k <= MAX_GROUP_SIZE:
        raise ValueError(f"controller {name!r}: {mode}K needs K between 2 and {MAX_GROUP_SIZE} samples")
    if inner not in CONTROLLERS:
        raise ValueError(f"controller {name!r}: {inner!r} is not a sequential controller; choose from {', '.join(CONTROLLERS)}")
    return ParallelController(mode, k, CONTROLLERS[inner](config))


def budget_split(name: str) -> int | None:
    """Over how many generations controller `name` splits an answer's budget N: K for majK:INNER /
    bestK:INNER (each sample is asked for floor(N/K)), 1 for a sequential controller; None for one
    that takes no budget (``unconstrained``, or a parallel form of it) or a name that is not a controller."""
    parallel = parse_parallel(name)
    k, inner = (parallel[1], parallel[2]) if parallel else (1, name)
    controller = CONTROLLERS.get(inner)
    if controller is None or controller.budget_kind == "none" or k < 1:
        return None
    return k


def controller_facts(config: ControllerConfig, names: list[str] | None = None) -> list[dict]:
    """Name, budget kind and description of each controller (the forms' table)."""
    out = []
    for name in names or controller_names():
        controller = make_controller(name, config)
        out.append({"controller": name, "budget": controller.budget_kind, "what it does with N": controller.description})
    return out


__all__ = ["CONTROLLERS", "CONTROLLER_CLASSES", "MODES", "budget_split", "controller_facts", "controller_names", "make_controller"]

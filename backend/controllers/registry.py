"""The controllers by name: what Compare, Sweep, ``app.py sweep`` and the API offer.

    controller = make_controller("l1_exact", ControllerConfig())
    sorted(CONTROLLERS)   # ['hard_cap', 'l1_exact', 'l1_max', 'no_thinking', 's1', 'unconstrained']
"""

from __future__ import annotations

from backend.controllers.base import Controller
from backend.controllers.config import ControllerConfig
from backend.controllers.prompted import HardCap, L1Exact, L1Max, NoThinking, Unconstrained
from backend.controllers.s1 import S1BudgetForcing

CONTROLLER_CLASSES: tuple[type[Controller], ...] = (L1Exact, L1Max, S1BudgetForcing, HardCap, NoThinking, Unconstrained)
CONTROLLERS: dict[str, type[Controller]] = {c.name: c for c in CONTROLLER_CLASSES}


def make_controller(name: str, config: ControllerConfig) -> Controller:
    try:
        return CONTROLLERS[name](config)
    except KeyError:
        raise ValueError(f"unknown controller {name!r}: choose from {', '.join(CONTROLLERS)}") from None

"""The controllers by name: what Compare, Sweep, ``app.py sweep`` and the API offer.

Sequential controllers have a name each; parallel ones are written ``majK:INNER`` or
``bestK:INNER`` over a sequential one (``maj4:l1_exact``, ``best8:hard_cap``). Verifier-guided
ones name their verifier after ``@`` (the ``search_verifier`` setting when they do not):
``prmK:INNER`` (best of K by the verifier's score), ``pvoteK:INNER`` (a vote weighted by it),
``beamWxM[:INNER]`` (beam search) and ``particlesP[:INNER]`` (particle filtering); the name a
controller carries always includes its verifier (``beam4x4`` -> ``beam4x4:l1_exact@tiny-prm``).

    controller = make_controller("l1_exact", ControllerConfig())
    make_controller("maj4:no_thinking", ControllerConfig()).budget_kind   # 'guaranteed'
    list(CONTROLLERS)   # ['l1_exact', 'l1_max', 's1', 'hard_cap', 'no_thinking', 'thinking_cap', 'early_exit', 'unconstrained', 'api_budget']
"""

from __future__ import annotations

import re

from backend.controllers.base import Controller
from backend.controllers.config import ControllerConfig
from backend.controllers.early_exit import EarlyExit
from backend.controllers.beam import BeamSearch
from backend.controllers.parallel import MAX_GROUP_SIZE, MODES, VERIFIED_MODES, ParallelController, parse_parallel
from backend.controllers.particles import ParticleFilter
from backend.controllers.search import SEARCH_INNER
from backend.controllers.prompted import ApiBudget, HardCap, L1Exact, L1Max, NoThinking, ThinkingCap, Unconstrained
from backend.controllers.s1 import S1BudgetForcing

CONTROLLER_CLASSES: tuple[type[Controller], ...] = (L1Exact, L1Max, S1BudgetForcing, HardCap, NoThinking, ThinkingCap, EarlyExit, Unconstrained,
                                                    ApiBudget)
CONTROLLERS: dict[str, type[Controller]] = {c.name: c for c in CONTROLLER_CLASSES}
# Parallel forms offered in the forms' lists (any majK:INNER / bestK:INNER may be typed or sent).
SUGGESTED_PARALLEL = ("maj4:l1_exact", "best4:l1_exact", "maj4:no_thinking", "prm4:l1_exact", "beam4x4", "particles4")
SEARCH_RE = re.compile(r"(beam)(\d+)x(\d+)(?::([^@\s]+))?(?:@(\S+))?|(particles)(\d+)(?::([^@\s]+))?(?:@(\S+))?")
MAX_SEARCH_PATHS = 64  # W x M of a beam search, P of particle filtering
NAME_VERIFIER = re.compile(r"@(\S+)$")


def controller_names() -> list[str]:
    """The names the forms offer: every sequential controller, then the suggested parallel forms."""
    return [*CONTROLLERS, *SUGGESTED_PARALLEL]


def make_controller(name: str, config: ControllerConfig) -> Controller:
    """The controller called `name`, or ValueError saying what names are valid."""
    if name in CONTROLLERS:
        return CONTROLLERS[name](config)
    search = SEARCH_RE.fullmatch(name)
    if search is not None:
        return _search(name, search, config)
    parallel = parse_parallel(name)
    if parallel is None:
        raise ValueError(f"unknown controller {name!r}: choose from {', '.join(CONTROLLERS)}, a parallel form majK:INNER / bestK:INNER "
                         f"such as maj4:l1_exact, a verifier-scored prmK:INNER / pvoteK:INNER, or a search beamWxM / particlesP")
    mode, k, inner = parallel
    if not 2 <= k <= MAX_GROUP_SIZE:
        raise ValueError(f"controller {name!r}: {mode}K needs K between 2 and {MAX_GROUP_SIZE} samples")
    if inner not in CONTROLLERS:
        raise ValueError(f"controller {name!r}: {inner!r} is not a sequential controller; choose from {', '.join(CONTROLLERS)}")
    verifier = NAME_VERIFIER.search(name)
    if verifier and mode not in VERIFIED_MODES:
        raise ValueError(f"controller {name!r}: {mode}K uses no verifier; drop the @{verifier.group(1)} or use prm{k}:{inner}")
    return ParallelController(mode, k, CONTROLLERS[inner](config), verifier.group(1) if verifier else config.search_verifier)


def _search(name: str, match: re.Match, config: ControllerConfig) -> Controller:
    """beamWxM[:INNER][@VERIFIER] or particlesP[:INNER][@VERIFIER]."""
    beam = match.group(1) is not None
    sizes = (int(match.group(2)), int(match.group(3))) if beam else (int(match.group(7)),)
    inner = (match.group(4) if beam else match.group(8)) or "l1_exact"
    verifier = (match.group(5) if beam else match.group(9)) or config.search_verifier
    paths = sizes[0] * sizes[-1] if beam else sizes[0]
    if min(sizes) < 1 or not 2 <= paths <= MAX_SEARCH_PATHS:
        raise ValueError(f"controller {name!r}: a search needs between 2 and {MAX_SEARCH_PATHS} paths (W x M for beamWxM, P for particlesP)")
    if inner not in SEARCH_INNER:
        raise ValueError(f"controller {name!r}: a search takes its prompt from one of {', '.join(SEARCH_INNER)}, not {inner!r}")
    if beam:
        return BeamSearch(sizes[0], sizes[1], CONTROLLERS[inner](config), verifier)
    return ParticleFilter(sizes[0], CONTROLLERS[inner](config), verifier)


def verifier_name(name: str, config: ControllerConfig) -> str | None:
    """The verifier controller `name` uses (its own or the setting's), None for one that uses none."""
    return getattr(make_controller(name, config), "verifier_name", None)


def naming_verifier(name: str, verifier: str) -> str:
    """`name` with ``@verifier`` when it is a verifier-guided controller that names none (``beam4x4`` with
    ``oracle``: ``beam4x4@oracle``); any other name, and one that is not a controller, unchanged (it is
    refused where names are checked, with the reason)."""
    if not verifier or NAME_VERIFIER.search(name):
        return name
    try:
        uses_one = verifier_name(name, ControllerConfig()) is not None
    except ValueError:
        return name
    return f"{name}@{verifier}" if uses_one else name


def budget_split(name: str) -> int | None:
    """Over how many generations controller `name` splits an answer's budget N: K for majK:INNER /
    bestK:INNER (each sample is asked for floor(N/K)), W x M or P paths for a search, 1 for a sequential
    controller; None for one that takes no budget (``unconstrained``, or a parallel form of it) or a name
    that is not a controller."""
    search = SEARCH_RE.fullmatch(name)
    if search is not None:
        return int(search.group(2)) * int(search.group(3)) if search.group(1) else int(search.group(7))
    parallel = parse_parallel(name)
    k, inner = (parallel[1], parallel[2]) if parallel else (1, name)
    controller = CONTROLLERS.get(inner)
    if controller is None or controller.budget_kind == "none" or k < 1:
        return None
    return k


def controller_family(name: str) -> str:
    """How controller `name` spends its budget: sequential (one thought), parallel (K samples, a vote or
    best-of), verified (K samples chosen by a verifier) or search (a tree grown under a verifier);
    sequential for a name no longer known (an older store's)."""
    try:
        return make_controller(name, ControllerConfig()).family
    except ValueError:
        return "sequential"


def controller_facts(config: ControllerConfig, names: list[str] | None = None) -> list[dict]:
    """Name, budget kind and description of each controller (the forms' table)."""
    out = []
    for name in names or controller_names():
        controller = make_controller(name, config)
        out.append({"controller": name, "budget": controller.budget_kind, "what it does with N": controller.description})
    return out


__all__ = ["CONTROLLERS", "CONTROLLER_CLASSES", "MODES", "budget_split", "controller_facts", "controller_names", "make_controller", "controller_family", "verifier_name"]

"""Loose user input (form values, API arguments, command-line strings) to checked values.

Every parser raises `InputError` with a message that says what to fix.

    parse_budgets("64, 128 256")      # (64, 128, 256)
    parse_controllers("l1_exact,s1")  # ('l1_exact', 's1')
    whole_number("--samples", "4")    # 4
"""

from __future__ import annotations

from collections.abc import Iterable

from backend.controllers.config import ControllerConfig
from backend.controllers.registry import CONTROLLERS, make_controller
from backend.errors import InputError


def parse_budgets(value: str | int | Iterable[str | int] | None) -> tuple[int, ...]:
    """'64, 128 256' or [64, "128"] -> (64, 128, 256); each a positive whole number of tokens."""
    if value is None or value == "":
        raise InputError("no budget given: enter one or more token budgets, e.g. 64,128,256")
    items = value.replace(",", " ").split() if isinstance(value, str) else [value] if isinstance(value, int) else list(value)
    budgets: list[int] = []
    for item in items:
        text = str(item).strip()
        try:
            number = float(text)
        except ValueError:
            raise InputError(f"budget {text!r}: not a number; budgets are positive whole numbers of tokens") from None
        if number != int(number) or number <= 0:
            raise InputError(f"budget {text}: must be a positive whole number of tokens")
        if int(number) not in budgets:
            budgets.append(int(number))
    if not budgets:
        raise InputError("no budget given: enter one or more token budgets, e.g. 64,128,256")
    return tuple(sorted(budgets))


def parse_controllers(value: str | Iterable[str] | None) -> tuple[str, ...]:
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value or [])
    if not items:
        raise InputError(f"no controller chosen: pick one or more of {', '.join(CONTROLLERS)}")
    for name in items:
        try:
            make_controller(name, ControllerConfig())
        except ValueError as exc:
            raise InputError(str(exc)) from None
    return tuple(dict.fromkeys(items))


def parse_seed(seed) -> int | None:
    """A seed, or None (empty: a random one is drawn)."""
    if seed is None or seed == "":
        return None
    try:
        return int(seed)
    except (TypeError, ValueError):
        raise InputError(f"seed {seed!r}: must be a whole number") from None


def whole_number(flag: str, value) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InputError(f"{flag} {value!r}: not a whole number") from None
    if number != int(number):
        raise InputError(f"{flag} {value}: must be a whole number")
    return int(number)


def split_names(value) -> tuple[str, ...]:
    """'a, b' or ['a', 'b,c'] -> ('a', 'b', 'c'): names in order, each once."""
    items = value.split(",") if isinstance(value, str) else [n for v in (value or []) for n in str(v).split(",")]
    return tuple(dict.fromkeys(n.strip() for n in items if n.strip()))

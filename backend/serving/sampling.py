"""How a request samples: temperature, top_p and its seed (a light module: the settings registry reads it).

    Sampling()                  # the settings' defaults: temperature 0.6, top_p 0.95 (the L1 paper's evaluation)
    Sampling(0.6, 0.95, seed=7)
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.config import setting


@dataclass(frozen=True)
class Sampling:
    """Sampling of one request; temperature and top_p are also settings (same names)."""

    temperature: float = setting(0.6, "Sampling temperature (the L1 paper evaluates at 0.6).")
    top_p: float = setting(0.95, "Nucleus sampling top_p (the L1 paper evaluates at 0.95).")
    seed: int | None = None
    logprobs: bool = False  # ask for each sampled token's log-probability (best-of-N's confidence)

    def __post_init__(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p {self.top_p}: must be in (0, 1]")
        if self.temperature < 0:
            raise ValueError(f"temperature {self.temperature}: must be 0 or more")

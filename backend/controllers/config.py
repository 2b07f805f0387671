"""What the controllers need besides the budget (a light module: the settings registry reads it).

    ControllerConfig(s1_max_waits=4)     # every field is also a setting of the same name
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.config import setting


AGGREGATIONS = ("last", "min", "prod")  # how a path's step scores make its score (backend.controllers.search.aggregate)


@dataclass(frozen=True)
class ControllerConfig:
    """What the controllers need besides the budget; each field is also a setting (same name)."""

    s1_max_waits: int = setting(8, "s1 budget forcing: how many times an early end of thinking is replaced by the wait text.")
    s1_wait_text: str = setting("Wait", "s1 budget forcing: text appended to make the model think longer.")
    s1_answer_prefix: str = setting("Final Answer:", "s1 budget forcing: text that forces the answer after the thinking is closed (no trailing space: BPE tokenizers attach a space to the word after it).")
    answer_max_tokens: int = setting(256, "Tokens allowed for the answer after a forced end of thinking (s1).")
    unconstrained_max_tokens: int = setting(8192, "Generation cap of the unconstrained controller (also capped by the context).")
    early_exit_chunk: int = setting(32, "early_exit: thinking tokens generated between two probes of the current answer.")
    early_exit_agree: int = setting(3, "early_exit: thinking stops once this many probes in a row give the same answer.")
    early_exit_probe_tokens: int = setting(24, "early_exit: tokens a probe may generate after the forced answer text (its answer is read from them).")
    search_verifier: str = setting("tiny-prm", "The verifier of a search or verifier-scored method named without one (beam4x4, particles4, prm4:l1_exact): a registered process reward model, or 'oracle' (the arith rule checker). Name one with @: beam4x4@oracle.")
    search_aggregation: str = setting("last", "How a path's step scores make its score: 'last' (the last step's), 'min' (the weakest step) or 'prod' (their product).")
    search_step_max_tokens: int = setting(96, "A search step (a line) is cut after this many tokens if no newline came.")

    def __post_init__(self) -> None:
        if self.s1_max_waits < 0:
            raise ValueError(f"s1_max_waits {self.s1_max_waits}: must be 0 or more")
        if not self.s1_wait_text:
            raise ValueError("s1_wait_text is empty: s1 needs a text to append, e.g. 'Wait'")
        if self.search_aggregation not in AGGREGATIONS:
            raise ValueError(f"search_aggregation {self.search_aggregation!r}: choose last, min or prod")
        if not self.search_verifier.strip():
            raise ValueError("search_verifier is empty: name a process reward model or 'oracle'")
        for name in ("answer_max_tokens", "unconstrained_max_tokens", "early_exit_chunk", "early_exit_agree", "early_exit_probe_tokens",
                     "search_step_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be a positive integer")

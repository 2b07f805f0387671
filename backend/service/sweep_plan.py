"""A sweep before it runs: the request, its items with stable keys and seeds, and its progress.

`parse_sweep_request` turns loose input (CLI strings, UI form values) into a checked
`SweepRequest`; `plan_items` lists a model's generations, each keyed by `sweep_key` (stable
across runs of the same name, so a resumed sweep skips what is stored) and seeded by
`sample_seed` (one seed per question and sample, shared by every controller and budget).

    request = parse_sweep_request(models="l1-tiny", dataset="arith", controllers="l1_exact,s1",
                                  budgets="64,128", samples=4, limit=20)
    items = plan_items("my-run", "l1-tiny", request, dataset.questions)
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

from backend.errors import InputError
from backend.evaluation.datasets import Dataset, Question
from backend.service.inputs import parse_budgets, parse_controllers, split_names, whole_number
from backend.serving.sampling import Sampling

MAX_SAMPLES = 1024
MAX_CONCURRENCY = 4096


@dataclass(frozen=True)
class SweepRequest:
    models: tuple[str, ...]
    dataset: str
    controllers: tuple[str, ...]
    budgets: tuple[int, ...]
    samples: int = 1
    limit: int | None = None
    seed: int = 0
    concurrency: int | None = None  # requests in flight; None: the sweep_concurrency setting
    run: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    skip_bad: bool = False
    split: str = "test"
    hub_config: str | None = None
    each_on_its_model: bool = True  # over several models: L1 prompts on the L1 models, the others on the rest (service.pairing)

    def __post_init__(self) -> None:
        if not self.models or not all(m.strip() for m in self.models):
            raise InputError("no model given: name one or more models, e.g. --model tiny-r1-base")
        if not self.dataset.strip():
            raise InputError("no dataset given: a built-in name (arith), a JSONL/Parquet/CSV file or a hub name")
        if not 1 <= self.samples <= MAX_SAMPLES:
            raise InputError(f"--samples {self.samples}: must be between 1 and {MAX_SAMPLES} per question")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit {self.limit}: must be a positive number of questions")
        if self.concurrency is not None and not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InputError(f"--concurrency {self.concurrency}: must be between 1 and {MAX_CONCURRENCY} requests")
        if self.run is not None and (not self.run.strip() or len(self.run) > 200):
            raise InputError("--run: a run name must be 1 to 200 characters")

    def to_json(self) -> dict:
        """The request as plain JSON (a sweep job keeps it in its folder); `from_json` reads it back."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> SweepRequest:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in known})

    def identity(self, dataset: Dataset, sampling: Sampling) -> dict:
        """What a resumed run must share with the original, or its keys would mean other things."""
        return {
            "dataset": dataset.name,
            "dataset_source": dataset.source,
            "limit": self.limit,
            "seed": self.seed,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }


def parse_sweep_request(models, dataset, controllers, budgets, samples=1, limit=None, seed=0, concurrency=None, run=None, **options) -> SweepRequest:
    """Loose input (CLI strings, UI form values) to a validated request, or InputError."""
    return SweepRequest(
        models=split_names(models),
        dataset=str(dataset or "").strip(),
        controllers=parse_controllers(controllers),
        budgets=parse_budgets(budgets),
        samples=whole_number("--samples", samples),
        limit=None if limit is None or str(limit).strip() == "" else whole_number("--limit", limit),
        seed=whole_number("--seed", seed),
        concurrency=None if concurrency is None or str(concurrency).strip() == "" else whole_number("--concurrency", concurrency),
        run=(str(run).strip() or None) if run is not None else None,
        **options,
    )


@dataclass(frozen=True)
class SweepItem:
    gen_id: str
    model: str
    controller: str
    budget: int
    question: Question
    sample_idx: int
    seed: int


def sweep_key(run_id: str, model: str, controller: str, budget: int, question_id: str, sample_idx: int) -> str:
    """The stable key of one generation of a run: 32 hex digits, the first 12 shared by the whole
    run (the store skips other runs' row groups by key range, as it does for time-ordered ids)."""
    run_part = hashlib.sha256(run_id.encode()).hexdigest()[:12]
    item = "\x1f".join((model, controller, str(budget), question_id, str(sample_idx)))
    return run_part + hashlib.sha256(item.encode()).hexdigest()[:20]


def sample_seed(seed: int, question_id: str, sample_idx: int) -> int:
    """One seed per (question, sample), shared by every controller and budget: their samples
    differ by the method, not by luck of the draw (common random numbers)."""
    digest = hashlib.sha256(f"{seed}\x1f{question_id}\x1f{sample_idx}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def plan_items(run_id: str, model: str, request: SweepRequest, questions: Iterable[Question],
               controllers: Iterable[str] | None = None) -> list[SweepItem]:
    """A model's items (of `controllers`, default the request's), one (controller, budget) group after another, samples side by side.

    Group after group keeps each group's wall time and tokens/s meaningful; samples of one
    prompt together let the engine's prefix cache reuse its prefill.
    """
    questions = list(questions)
    return [
        SweepItem(sweep_key(run_id, model, controller, budget, q.qid, s), model, controller, budget, q, s, sample_seed(request.seed, q.qid, s))
        for controller in (request.controllers if controllers is None else controllers)
        for budget in request.budgets
        for q in questions
        for s in range(request.samples)
    ]


# --- running


@dataclass
class SweepProgress:
    run_id: str
    total: int = 0  # generations the sweep consists of
    stored_before: int = 0  # found in the store when it started (a resumed run)
    done: int = 0  # generated by this invocation and acknowledged by the store
    failed: int = 0
    output_tokens: int = 0
    started_at: float = 0.0
    message: str = ""
    last_error: str | None = None

    @property
    def complete(self) -> int:
        return self.stored_before + self.done

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    def to_json(self) -> dict:
        """What a sweep job writes to its folder as it runs, so any page can show it (`from_json`)."""
        return {"run_id": self.run_id, "total": self.total, "stored_before": self.stored_before, "done": self.done, "failed": self.failed,
                "complete": self.complete, "output_tokens": self.output_tokens, "elapsed_s": round(self.elapsed_s, 1),
                "message": self.message, "last_error": self.last_error}

    @classmethod
    def from_json(cls, data: dict) -> SweepProgress:
        """A progress as another thread or process wrote it (`to_json`); its elapsed time is the one written."""
        elapsed = float(data.get("elapsed_s") or 0.0)
        return cls(str(data.get("run_id") or ""), int(data.get("total") or 0), int(data.get("stored_before") or 0), int(data.get("done") or 0),
                   int(data.get("failed") or 0), int(data.get("output_tokens") or 0), time.monotonic() - elapsed if elapsed else 0.0,
                   str(data.get("message") or ""), data.get("last_error"))

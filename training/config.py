"""An LCPO job's typed config, checked field by field, and job files (YAML) read into it.

`LCPOConfig` holds every field of a fine-tune with its default and help text (the Train tab's
form is generated from it); a config that cannot run raises `ConfigError` naming each field and
what to change. A job file holds the fields as YAML; with ``job: tiny_base`` it describes the
tiny base model's training instead (`training.tiny.job.TinyBaseConfig`).

    config = load_config("training/configs/tiny-smoke.yaml", output_dir="/tmp/smoke")
    job = load_job("training/configs/tiny-r1-base.yaml")      # a TinyBaseConfig
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.evaluation.grading import GRADE_TIMEOUT_S
from training.budget_traces import MAX_TICK, TICK_UNIT
from training.traces import COLUMN_STYLES

MODES = ("exact", "max", "both")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
JOB_LCPO, JOB_TINY_BASE, JOB_PRM = "lcpo", "tiny_base", "prm"


class ConfigError(ValueError):
    """A job config that cannot run; the message names the field and what to change.

    ``problems`` holds (field, message) pairs, so a form can show each beside its field."""

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


def _f(default, help: str, **kwargs):  # noqa: A002 - "help" reads best in the field list
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass(frozen=True)
class LCPOConfig:
    base_model: str = _f("", "Model to fine-tune: a local folder (e.g. models/tiny-r1-base) or a Hugging Face id.")
    output_dir: str = _f("", "Folder for checkpoints, metrics.jsonl and the final model (final/).")
    dataset: str = _f("arith", "Training questions: 'arith' (generated with dataset_seed) or a JSONL/Parquet/CSV file.")
    dataset_seed: int = _f(1, "Seed of the arith training problems; evaluations use other seeds.")
    num_examples: int = _f(2000, "Training examples (arith: generated; a file: a seeded sample).")
    arith_min_ops: int = _f(1, "arith: fewest operations per problem.")
    arith_max_ops: int = _f(6, "arith: most operations per problem.")
    mode: str = _f("exact", "'exact' (Think for N tokens.), 'max' (Think for maximum N tokens.) or 'both' (half each).")
    alpha_exact: float = _f(0.0003, "Exact reward: penalty per token of |n_gold - n_y|.")
    alpha_max: float = _f(0.001, "Max reward: slope of the length term alpha * (n_gold - n_y).")
    delta: float = _f(0.5, "Max reward: offset of the length term before clipping to [0, 1].")
    n_min: int = _f(32, "Smallest target length N drawn for a prompt.")
    n_max: int = _f(256, "Largest target length N drawn for a prompt.")
    num_generations: int = _f(8, "GRPO group size: completions per prompt.")
    per_device_train_batch_size: int = _f(16, "Completions per device per step (a multiple of num_generations).")
    gradient_accumulation_steps: int = _f(1, "Steps whose gradients are summed before an update.")
    learning_rate: float = _f(1e-5, "AdamW learning rate.")
    max_steps: int = _f(100, "Optimizer steps of the job.")
    max_completion_length: int = _f(512, "Most tokens generated per completion (thinking and answer).")
    temperature: float = _f(0.6, "Sampling temperature of the rollouts.")
    top_p: float = _f(0.95, "Nucleus sampling top_p of the rollouts.")
    beta: float = _f(0.0, "KL coefficient against the reference model (0: no reference model).")
    loss_type: str = _f("grpo", f"TRL loss type: one of {', '.join(LOSS_TYPES)}.")
    logging_steps: int = _f(1, "Steps between metric lines in metrics.jsonl.")
    save_steps: int = _f(25, "Steps between checkpoints (a killed job resumes from the last one).")
    save_total_limit: int = _f(2, "Checkpoints kept.")
    seed: int = _f(0, "Seed of target lengths, sampling and initialization.")
    grade_timeout_s: float = _f(GRADE_TIMEOUT_S, "Bound on grading one answer, in seconds.")
    warm_start_problems: int = _f(0, "Warm start before GRPO (training/warm_start.py): problems to sample the base model on; 0 skips it.")
    warm_start_per_problem: int = _f(4, "Warm start: completions sampled per problem.")
    warm_start_temperature: float = _f(1.0, "Warm start: sampling temperature (higher: more varied lengths).")
    warm_start_epochs: int = _f(2, "Warm start: passes of SFT over the relabeled samples.")
    warm_start_learning_rate: float = _f(0.001, "Warm start: peak SFT learning rate (warmup, then cosine).")
    warm_start_batch_tokens: int = _f(2048, "Warm start: padded tokens per SFT batch.")
    warm_start_max_slack: float = _f(1.2, "Warm start: a Max example of n tokens gets a maximum drawn in [n, slack * n]; larger: the model keeps further below N.")
    warm_start_decision_weight: float = _f(0.0, "Warm start: extra loss weight per nat of the base model's entropy at a token (the length-setting choices); 0: plain SFT.")
    warm_start_traces: int = _f(0, "Warm start on generated budget-aware traces (training/budget_traces.py, arith only) instead of the base's samples: examples to generate, N uniform in [n_min, n_max], Exact and Max as mode says; 0: none.")
    warm_start_steps: int = _f(0, "Budget-aware traces: SFT steps (0: warm_start_epochs passes over the examples).")
    warm_start_tick_every: int = _f(0, "Budget-aware traces: about how many tokens between two countdown ticks the model writes (0: no ticks).")
    warm_start_tick_style: str = _f("token", "Budget-aware traces: a tick is one token per value (token) or one per digit (digits).")
    warm_start_n_min: int = _f(0, "Budget-aware traces: the smallest N of the SFT examples (0: n_min); a little below n_min, the first ticks of the smallest budgets are trained as well as the rest.")
    warm_start_n_max: int = _f(0, "Budget-aware traces: the largest N of the SFT examples (0: n_max); a little above n_max, the ticks of the largest budgets are trained as well as the rest, not only at the edge of the range.")
    warm_start_tick_place: str = _f("interval", "Budget-aware traces: ticks at word boundaries about every tick_every tokens, each one less than the last (interval), or at line starts (lines).")
    warm_start_max_close: str = _f("under", "Budget-aware traces: a Max trace is an Exact one 6-15% under M whose ticks count to its own end (under), or its ticks count to M as for Exact and it closes at ‹1 + M // 100› instead of ‹0› (count: the first tick is M's leading digits, only the stop differs), or it is an Exact trace whose first tick is M // 10 - (1 + M // 100) (first: a fixed margin of 10-19% worked out from M's digits).")
    warm_start_plain_share: float = _f(0.0, "Budget-aware traces: share of the SFT examples under the plain prompt (no length instruction) in the base model's own styles, so that s1, hard_cap and the other plain-prompt controllers work on the fine-tuned model as on its base.")
    warm_start_tick_noise: float = _f(0.0, "Budget-aware traces: share of the ticked SFT examples given a spurious tick (two in a long one), a copy of an earlier tick or another value, in the context but out of the loss, with the true count going on after it: a sampled countdown that copies a tick runs on past N unless the model has learned to read past it.")
    warm_start_cut_passes: bool = _f(False, "Budget-aware traces: also plans whose last whole re-pass the countdown stops part way, closing with the result the first pass reached (a model stopped mid-re-pass must not state the re-pass's last line).")
    warm_start_column_checks: bool = _f(False, "Budget-aware traces: each operation is checked by its inverse worked in columns, right after the work, instead of one-shot checks (which mostly copy the result).")
    warm_start_slip_share: float = _f(0.0, "Budget-aware traces: share of traces with one operation slipped (a digit off), caught by its column check and worked again; the slipped work is in the context but out of the loss (implies column checks).")
    warm_start_cut_share: float = _f(0.0, "Budget-aware traces: share of traces whose next line is stopped part way (at a word boundary) where the countdown says to close, so that the model closes on the count and not only at the end of a line it planned.")
    warm_start_close_block: bool = _f(False, "Budget-aware traces: the closing always starts a line at ‹2› (20-29 tokens left, the answer included) and the work's ticks stop at ‹3›, so no work line ever meets ‹2› or ‹1› (where sampled countdowns restarted).")
    warm_start_column_style: str = _f("compact", "Budget-aware traces: how each operation is worked in columns: compact (\"12 - 3 - 1 = 8\", the base model's) or explicit (\"2 - 3 - 1 < 0, 12 - 3 - 1 = 8\": the column is written before the borrow is decided, and digits no operand touches are carried as \"2 = 2\").")
    warm_start_close_next_line: bool = _f(False, "Budget-aware traces, with warm_start_close_block: the line that holds ‹3› is the last work line and the closing starts the next one, so no other work line comes between ‹3› and ‹2› (where sampled countdowns restarted, I30-9).")
    warm_start_close_tick_weight: float = _f(1.0, "Budget-aware traces: the loss weight of each ticked trace's ‹2›, with warm_start_close_block the token that starts the closing (the decision to stop working), 1: a token like the others.")
    warm_start_first_tick_weight: float = _f(1.0, "Budget-aware traces: the loss weight of each ticked trace's first tick, the budget's digits read from the prompt, from which the whole countdown follows (1: a token like the others).")
    precision: str = _f("auto", "Training precision: 'auto' (bf16 on a GPU, fp32 on a CPU), 'bf16' or 'fp32'.")
    use_vllm: bool = _f(False, "Generate rollouts with TRL's vLLM integration (GPU machines; colocated).")
    export_dir: str = _f("", "Also copy the finished model here (e.g. models/l1-tiny), replacing what is there.")
    max_context: int = _f(0, "The model's context length; 0: read from the base model's config.")

    def __post_init__(self) -> None:
        problems = tuple(_problems(self))
        if problems:
            raise ConfigError("; ".join(message for _, message in problems), problems)

    @property
    def group_count(self) -> int:
        return self.per_device_train_batch_size // self.num_generations


def _problems(c: LCPOConfig):
    """(field, message) for each thing wrong with `c`; the form shows each message beside its field."""
    if not c.base_model:
        yield "base_model", "base_model is empty: give a model folder (e.g. models/tiny-r1-base) or a Hugging Face id"
    if c.mode not in MODES:
        yield "mode", f"mode {c.mode!r}: choose exact, max or both"
    if c.precision not in ("auto", "bf16", "fp32"):
        yield "precision", f"precision {c.precision!r}: choose auto, bf16 or fp32"
    if c.loss_type not in LOSS_TYPES:
        yield "loss_type", f"loss_type {c.loss_type!r}: choose one of {', '.join(LOSS_TYPES)}"
    if c.num_generations < 2:
        yield "num_generations", f"num_generations {c.num_generations}: GRPO compares completions within a group, so it needs at least 2"
    elif c.per_device_train_batch_size % c.num_generations:
        yield "per_device_train_batch_size", (
            f"per_device_train_batch_size {c.per_device_train_batch_size} is not divisible by num_generations "
            f"{c.num_generations}: use a multiple, e.g. {c.num_generations * max(1, c.per_device_train_batch_size // c.num_generations)}")
    if not 1 <= c.n_min <= c.n_max:
        yield "n_min", f"n_min {c.n_min}, n_max {c.n_max}: need 1 <= n_min <= n_max"
    if c.max_context and c.n_max >= c.max_context:
        yield "n_max", f"n_max {c.n_max}: must be below the model's context of {c.max_context} tokens"
    if c.max_completion_length < c.n_max:
        yield "max_completion_length", f"max_completion_length {c.max_completion_length}: below n_max {c.n_max}, so no completion could reach its target; raise it (e.g. {2 * c.n_max})"
    for name in ("num_examples", "max_steps", "logging_steps", "save_steps", "save_total_limit", "gradient_accumulation_steps", "per_device_train_batch_size"):
        if getattr(c, name) < 1:
            yield name, f"{name} {getattr(c, name)}: must be a positive whole number"
    if c.learning_rate <= 0:
        yield "learning_rate", f"learning_rate {c.learning_rate}: must be positive"
    for name in ("alpha_exact", "alpha_max"):
        if getattr(c, name) < 0:
            yield name, f"{name} {getattr(c, name)}: must be 0 or more"
    if not 0 <= c.delta <= 1:
        yield "delta", f"delta {c.delta}: must be between 0 and 1"
    if c.temperature <= 0:
        yield "temperature", f"temperature {c.temperature}: must be above 0 (rollouts are sampled)"
    if not 0 < c.top_p <= 1:
        yield "top_p", f"top_p {c.top_p}: need 0 < top_p <= 1"
    if c.beta < 0:
        yield "beta", f"beta {c.beta}: must be 0 or more"
    yield from _warm_start_problems(c)
    if not 1 <= c.arith_min_ops <= c.arith_max_ops:
        yield "arith_min_ops", f"arith_min_ops {c.arith_min_ops}, arith_max_ops {c.arith_max_ops}: need 1 <= min <= max"


def _warm_start_problems(c: LCPOConfig):
    if c.warm_start_problems < 0 or c.warm_start_traces < 0:
        name = "warm_start_problems" if c.warm_start_problems < 0 else "warm_start_traces"
        yield name, f"{name} {getattr(c, name)}: must be 0 (no warm start) or more"
        return
    if c.warm_start_problems and c.warm_start_traces:
        yield "warm_start_traces", "warm_start_traces and warm_start_problems are two kinds of warm start: set one of them to 0"
    if c.warm_start_problems or c.warm_start_traces:
        for name in ("warm_start_epochs", "warm_start_batch_tokens") + (("warm_start_per_problem",) if c.warm_start_problems else ()):
            if getattr(c, name) < 1:
                yield name, f"{name} {getattr(c, name)}: must be a positive whole number"
        for name in ("warm_start_temperature", "warm_start_learning_rate"):
            if getattr(c, name) <= 0:
                yield name, f"{name} {getattr(c, name)}: must be positive"
    if c.warm_start_problems:
        if c.warm_start_max_slack < 1:
            yield "warm_start_max_slack", f"warm_start_max_slack {c.warm_start_max_slack}: must be 1 or more (a maximum is at least the sample's length)"
        if c.warm_start_decision_weight < 0:
            yield "warm_start_decision_weight", f"warm_start_decision_weight {c.warm_start_decision_weight}: must be 0 or more"
    if c.warm_start_traces:
        if c.dataset != "arith":
            yield "warm_start_traces", f"warm_start_traces: budget-aware traces are written for the arith suite, not for {c.dataset!r}"
        if c.warm_start_steps < 0 or c.warm_start_tick_every < 0:
            yield "warm_start_steps", "warm_start_steps and warm_start_tick_every: must be 0 or more"
        if c.warm_start_tick_style not in ("token", "digits"):
            yield "warm_start_tick_style", f"warm_start_tick_style {c.warm_start_tick_style!r}: choose token or digits"
        top = c.warm_start_n_max or c.n_max
        if c.warm_start_n_min < 0 or c.warm_start_n_min > c.n_min:
            yield "warm_start_n_min", f"warm_start_n_min {c.warm_start_n_min}: must be 0 (n_min) or from 1 to n_min ({c.n_min})"
        if c.warm_start_n_max and c.warm_start_n_max < c.n_max:
            yield "warm_start_n_max", f"warm_start_n_max {c.warm_start_n_max}: must be 0 (n_max) or at least n_max ({c.n_max})"
        elif c.warm_start_tick_every and top >= TICK_UNIT * (MAX_TICK + 1):
            yield "warm_start_n_max", f"the largest SFT budget {top}: the countdown's ticks (‹0›..‹{MAX_TICK}›) reach {TICK_UNIT * (MAX_TICK + 1) - 1} tokens"
        if c.warm_start_max_close not in ("under", "count", "first"):
            yield "warm_start_max_close", f"warm_start_max_close {c.warm_start_max_close!r}: choose under, count or first"
        if not 0 <= c.warm_start_cut_share <= 1:
            yield "warm_start_cut_share", f"warm_start_cut_share {c.warm_start_cut_share}: a share from 0 to 1"
        if not 0 <= c.warm_start_tick_noise <= 1:
            yield "warm_start_tick_noise", f"warm_start_tick_noise {c.warm_start_tick_noise}: a share from 0 to 1"
        if not 0 <= c.warm_start_slip_share <= 1:
            yield "warm_start_slip_share", f"warm_start_slip_share {c.warm_start_slip_share}: a share from 0 to 1"
        if not 0 <= c.warm_start_plain_share < 1:
            yield "warm_start_plain_share", f"warm_start_plain_share {c.warm_start_plain_share}: a share from 0 to below 1"
        for name in ("warm_start_first_tick_weight", "warm_start_close_tick_weight"):
            if getattr(c, name) <= 0:
                yield name, f"{name} {getattr(c, name)}: a positive weight (1: unweighted)"
        if c.warm_start_column_style not in COLUMN_STYLES:
            yield "warm_start_column_style", f"warm_start_column_style {c.warm_start_column_style!r}: choose {' or '.join(COLUMN_STYLES)}"
        if c.warm_start_slip_share and c.warm_start_column_style != "compact":
            yield "warm_start_slip_share", f"warm_start_slip_share {c.warm_start_slip_share}: slips are written for the compact column style only"
        if c.warm_start_tick_place not in ("interval", "lines"):
            yield "warm_start_tick_place", f"warm_start_tick_place {c.warm_start_tick_place!r}: choose interval or lines"


def config_fields() -> list[dataclasses.Field]:
    return list(dataclasses.fields(LCPOConfig))


def load_config(path: str | Path, **overrides: Any) -> LCPOConfig:
    """Read an LCPO job file (YAML or JSON); ``overrides`` (e.g. output_dir) win over the file."""
    job = load_job(path, **overrides)
    if not isinstance(job, LCPOConfig):
        raise ConfigError(f"{path}: a {JOB_TINY_BASE} job, not an LCPO job")
    return job


def load_job(path: str | Path, **overrides: Any):
    """An `LCPOConfig`, or with ``job: tiny_base`` in the file the base model's
    `training.tiny.job.TinyBaseConfig` (``output_dir`` is its ``out``), or with ``job: prm`` a
    process reward model's `training.prm.PRMConfig`."""
    data = _read_job_file(Path(path))
    kind = data.pop("job", JOB_LCPO)
    if kind == JOB_TINY_BASE:
        from training.tiny.job import TinyBaseConfig

        if overrides.get("output_dir") is not None:
            data["out"] = overrides.pop("output_dir")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return config_from_dict(data, where=str(path), cls=TinyBaseConfig)
    if kind == JOB_PRM:
        from training.prm import PRMConfig

        data.update({k: v for k, v in overrides.items() if v is not None})
        return config_from_dict(data, where=str(path), cls=PRMConfig)
    if kind != JOB_LCPO:
        raise ConfigError(f"{path}: job {kind!r}: choose {JOB_LCPO}, {JOB_TINY_BASE} or {JOB_PRM}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(data, where=str(path))


def _read_job_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"no job file at {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of field: value")
    return data


def config_from_dict(data: dict[str, Any], where: str = "config", cls: type = None):
    """A ``cls`` (default `LCPOConfig`) from plain values, type-checked field by field."""
    cls = cls or LCPOConfig
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(known)}")
    values = {}
    for name, value in data.items():
        kind = type(known[name].default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            message = f"{name} = {value!r} is a {type(value).__name__}; it must be {kind.__name__}"
            raise ConfigError(f"{where}: {message}", ((name, message),))
        values[name] = value
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None

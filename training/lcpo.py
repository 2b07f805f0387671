"""LCPO: GRPO with the L1 paper's length-aware rewards, run through TRL's GRPOTrainer.

One job = one `LCPOConfig` (a YAML file of its fields). The prompts are the ones the
``l1_exact``/``l1_max`` controllers send ("... Think for N tokens." / "Think for maximum N
tokens."), in chat form so the model's own template applies, each with a target N drawn
uniformly from ``[n_min, n_max]``; the reward is `training.rewards`' Exact or Max reward (or
both, half the examples each). Metrics of every logging step go to ``metrics.jsonl`` in the
output folder (one JSON object per line, for another process to follow); checkpoints go to
``checkpoint-*`` and a job started again on the same folder resumes from the last one; the
finished model is saved in Hugging Face format under ``final/``, servable as it is.

    python app.py train --config training/configs/tiny-smoke.yaml --output-dir /tmp/smoke

    config = load_config("training/configs/tiny-smoke.yaml", output_dir="/tmp/smoke")
    final_dir = run_job(config)
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

MODES = ("exact", "max", "both")
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo")
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "lcpo_config.json"
WARM_START_SEED_OFFSET = 500
JOB_LCPO, JOB_TINY_BASE = "lcpo", "tiny_base"


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
    grade_timeout_s: float = _f(5.0, "Bound on grading one answer.")
    warm_start_problems: int = _f(0, "Warm start before GRPO (training/warm_start.py): problems to sample the base model on; 0 skips it.")
    warm_start_per_problem: int = _f(4, "Warm start: completions sampled per problem.")
    warm_start_temperature: float = _f(1.0, "Warm start: sampling temperature (higher: more varied lengths).")
    warm_start_epochs: int = _f(2, "Warm start: passes of SFT over the relabeled samples.")
    warm_start_learning_rate: float = _f(0.001, "Warm start: peak SFT learning rate (warmup, then cosine).")
    warm_start_batch_tokens: int = _f(2048, "Warm start: padded tokens per SFT batch.")
    warm_start_max_slack: float = _f(1.2, "Warm start: a Max example of n tokens gets a maximum drawn in [n, slack * n]; larger: the model keeps further below N.")
    warm_start_decision_weight: float = _f(0.0, "Warm start: extra loss weight per nat of the base model's entropy at a token (the length-setting choices); 0: plain SFT.")
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
    if c.warm_start_problems < 0:
        yield "warm_start_problems", f"warm_start_problems {c.warm_start_problems}: must be 0 (no warm start) or more"
    elif c.warm_start_problems:
        for name in ("warm_start_per_problem", "warm_start_epochs", "warm_start_batch_tokens"):
            if getattr(c, name) < 1:
                yield name, f"{name} {getattr(c, name)}: must be a positive whole number"
        if c.warm_start_max_slack < 1:
            yield "warm_start_max_slack", f"warm_start_max_slack {c.warm_start_max_slack}: must be 1 or more (a maximum is at least the sample's length)"
        if c.warm_start_decision_weight < 0:
            yield "warm_start_decision_weight", f"warm_start_decision_weight {c.warm_start_decision_weight}: must be 0 or more"
        for name in ("warm_start_temperature", "warm_start_learning_rate"):
            if getattr(c, name) <= 0:
                yield name, f"{name} {getattr(c, name)}: must be positive"
    if not 1 <= c.arith_min_ops <= c.arith_max_ops:
        yield "arith_min_ops", f"arith_min_ops {c.arith_min_ops}, arith_max_ops {c.arith_max_ops}: need 1 <= min <= max"


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
    `training.tiny_model.TinyBaseConfig` (``output_dir`` is its ``out``)."""
    data = _read_job_file(Path(path))
    kind = data.pop("job", JOB_LCPO)
    if kind == JOB_TINY_BASE:
        from training.tiny_model import TinyBaseConfig

        if overrides.get("output_dir") is not None:
            data["out"] = overrides.pop("output_dir")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return config_from_dict(data, where=str(path), cls=TinyBaseConfig)
    if kind != JOB_LCPO:
        raise ConfigError(f"{path}: job {kind!r}: choose {JOB_LCPO} or {JOB_TINY_BASE}")
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


# --- data


def training_rows(config: LCPOConfig, dataset_policy=None) -> list[dict[str, Any]]:
    """Prompts with their targets: chat messages, gold answer, target_tokens and mode per row.
    ``dataset_policy``: a `backend.datasets.DatasetPolicy` for a dataset file (default: any path, default size limit)."""
    from backend import prompts

    rng = random.Random(config.seed)
    rows = []
    for i, (question, gold) in enumerate(_questions(config, config.dataset_seed, config.num_examples, dataset_policy)):
        mode = config.mode if config.mode != "both" else ("exact" if i % 2 == 0 else "max")
        target = rng.randint(config.n_min, config.n_max)
        text = prompts.l1_exact_prompt(question, target) if mode == "exact" else prompts.l1_max_prompt(question, target)
        rows.append({"prompt": prompts.chat_messages(text), "answer": gold, "target_tokens": target, "mode": mode})
    return rows


def warm_start_questions(config: LCPOConfig, dataset_policy=None) -> list[dict[str, str]]:
    """The warm start's problems: another seed than the GRPO prompts' (and than any eval's)."""
    seed = config.dataset_seed + WARM_START_SEED_OFFSET
    return [{"question": q, "gold": g} for q, g in _questions(config, seed, config.warm_start_problems, dataset_policy)]


def _questions(config: LCPOConfig, seed: int, n: int, dataset_policy=None):
    if config.dataset == "arith":
        from training.arith import make_problems

        for problem in make_problems(seed, n, config.arith_min_ops, config.arith_max_ops):
            yield problem.question, str(problem.answer)
        return
    from backend.datasets import DatasetPolicy, load_dataset

    for question in load_dataset(config.dataset, seed=seed, limit=n, policy=dataset_policy or DatasetPolicy()).questions:
        yield question.question, question.gold


# --- the job


def trl_config(config: LCPOConfig, device: str):
    from trl import GRPOConfig

    on_cpu = device == "cpu"
    return GRPOConfig(
        output_dir=config.output_dir,
        num_generations=config.num_generations,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p,
        beta=config.beta,
        loss_type=config.loss_type,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        use_cpu=on_cpu,
        bf16=config.precision == "bf16" or (config.precision == "auto" and not on_cpu),
        use_vllm=config.use_vllm and not on_cpu,
        vllm_mode="colocate",
        report_to=[],
        disable_tqdm=True,
    )


RESUMABLE_CHANGES = ("output_dir", "export_dir", "max_steps", "save_steps", "save_total_limit", "logging_steps")


def check_same_job(out: Path, config: LCPOConfig) -> None:
    """Refuse to run ``config`` in a folder that holds a job with another config: the run would
    resume that job's warm start and checkpoints and mix the two recipes. Where it writes its
    results, how often it saves and logs, and how many steps it runs may differ: a rerun of the
    same job, or a longer one, resumes it."""
    try:
        before = json.loads((out / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return  # a new folder (or one without a readable job config): nothing to resume
    now = json.loads(json.dumps(dataclasses.asdict(config)))
    changed = [f"{k}: {before.get(k)!r} -> {v!r}" for k, v in now.items() if k not in RESUMABLE_CHANGES and before.get(k) != v]
    if changed:
        raise ConfigError(f"{out} holds a job with another config ({'; '.join(changed[:4])}{'; ...' if len(changed) > 4 else ''}); "
                          f"running this one there would resume that job's warm start and checkpoints: give another --output-dir, or delete {out}")


def run_job(config: LCPOConfig, device: str | None = None, command: str = "", dataset_policy=None) -> Path:
    """Train (resuming from the last checkpoint in output_dir, if any); return the final model's
    folder (``export_dir`` when set). ``command`` is how the job was started, for the model card;
    ``dataset_policy`` bounds a dataset file (see `training_rows`)."""
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    from datasets import Dataset
    from training.model_card import write_lcpo_card
    from training.rewards import make_lcpo_reward

    device = device or _device()
    out = Path(config.output_dir)
    policy = config.base_model
    # Under `accelerate launch` / `torchrun` every process runs this function: files shared by all
    # of them are written by the first, and the warm start runs there first (the others reuse it).
    # The training arguments set up the processes (their device settings decide CPU or GPU).
    args = trl_config(config, device)
    main = args.process_index == 0
    check_same_job(out, config)
    with args.main_process_first(desc="warm start"):
        if main:
            out.mkdir(parents=True, exist_ok=True)
            (out / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
        if config.warm_start_problems:
            from training.warm_start import warm_start

            policy = str(warm_start(config, warm_start_questions(config, dataset_policy)))
    tokenizer = AutoTokenizer.from_pretrained(policy)
    rewards = [make_lcpo_reward(config.mode, delta=config.delta, grade_timeout_s=config.grade_timeout_s,
                                alpha_by_mode={"exact": config.alpha_exact, "max": config.alpha_max})]
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=rewards,
        args=args,
        train_dataset=Dataset.from_list(training_rows(config, dataset_policy)),
        processing_class=tokenizer,
        callbacks=[metrics := MetricsFile(out / METRICS_FILE)],
    )
    checkpoint = last_complete_checkpoint(out)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if metrics.diverged_at is not None:
        precision = "bf16" if trainer.args.bf16 else "fp32"
        raise TrainingDiverged(
            f"training diverged at step {metrics.diverged_at} (gradient norm not finite, {precision}); nothing was saved "
            f"after it. Lower learning_rate (now {config.learning_rate})" + (", or set precision: fp32 (a model of a few "
            "million parameters overflows in bf16)" if precision == "bf16" else "") + f"; the last checkpoint in {out} is intact.")
    final = out / "final"
    trainer.save_model(str(final))  # every process: it gathers sharded weights
    if not main:
        return final
    tokenizer.save_pretrained(str(final))
    (final / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    export = Path(config.export_dir) if config.export_dir else None
    existing_card = export / "README.md" if export and (export / "README.md").exists() else final / "README.md"
    write_lcpo_card(final, out, dataclasses.asdict(config), command or "run_job(config)",
                    existing_card.read_text() if existing_card.exists() else "", name=export.name if export else "")
    if export:
        import shutil

        if export.exists():
            shutil.rmtree(export)
        shutil.copytree(final, export, ignore=shutil.ignore_patterns("training_args.bin"))
        return export
    return final


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint whose save finished: the Trainer writes trainer_state.json last, so a
    job killed in the middle of a save leaves a folder without a readable one, which is skipped."""
    def step(folder: Path) -> int:
        suffix = folder.name.rpartition("-")[2]
        return int(suffix) if suffix.isdigit() else -1

    for folder in sorted(Path(output_dir).glob("checkpoint-*"), key=step, reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        return folder
    return None


def _device() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


class TrainingDiverged(RuntimeError):
    """The gradients became NaN or infinite; the message says what to change."""


class MetricsFile(TrainerCallback):
    """Appends each logging step's metrics to a JSONL file, flushed at once (others tail it),
    and stops the job at the first non-finite gradient norm (the next rollout would sample from
    NaN probabilities: on a GPU that is a device-side assert, not an error message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.time()
        self.diverged_at: int | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        grad_norm = logs.get("grad_norm")
        if isinstance(grad_norm, float) and not math.isfinite(grad_norm) and self.diverged_at is None:
            self.diverged_at = state.global_step
            control.should_training_stop = True
            control.should_save = False
        if not state.is_world_process_zero:
            return  # one line per step, whatever the number of processes
        record = {"step": state.global_step, "max_steps": state.max_steps, "time": time.time(), "elapsed_s": round(time.time() - self.started, 3)}
        record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str))})
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

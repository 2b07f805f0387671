"""LCPO: GRPO with the L1 paper's length-aware rewards, run through TRL's GRPOTrainer.

One job = one `LCPOConfig` (`training.config`; a YAML file of its fields). The prompts are the ones the
``l1_exact``/``l1_max`` controllers send ("... Think for N tokens." / "Think for maximum N
tokens."), in chat form so the model's own template applies, each with a target N drawn
uniformly from ``[n_min, n_max]``; the reward is `training.rewards`' Exact or Max reward (or
both, half the examples each). Metrics of every logging step go to ``metrics.jsonl`` in the
output folder (one JSON object per line, for another process to follow); checkpoints go to
``checkpoint-*`` and a job started again on the same folder resumes from the last one; the
finished model is saved in Hugging Face format under ``final/``, servable as it is.

    python app.py train --config training/configs/tiny-smoke.yaml --output-dir /tmp/smoke

    config = load_config("training/configs/tiny-smoke.yaml", output_dir="/tmp/smoke")
    final_dir = run_job(config)       # load_config: training.config
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from backend.jobs.disk import last_complete_checkpoint
from training.config import ConfigError, LCPOConfig

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "lcpo_config.json"
WARM_START_SEED_OFFSET = 500


# --- data


def training_rows(config: LCPOConfig, dataset_policy=None) -> list[dict[str, Any]]:
    """Prompts with their targets: chat messages, gold answer, target_tokens and mode per row.
    ``dataset_policy``: a `backend.evaluation.datasets.DatasetPolicy` for a dataset file (default: any path, default size limit)."""
    from backend.controllers import prompts

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
        from backend.evaluation.arith import make_problems

        for problem in make_problems(seed, n, config.arith_min_ops, config.arith_max_ops):
            yield problem.question, str(problem.answer)
        return
    from backend.evaluation.datasets import DatasetPolicy, load_dataset

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
    # A field added after the job was written is the default it ran with.
    defaults = {f.name: f.default for f in dataclasses.fields(LCPOConfig)}
    before = {k: before.get(k, defaults.get(k)) for k in now}
    changed = [f"{k}: {before.get(k)!r} -> {v!r}" for k, v in now.items() if k not in RESUMABLE_CHANGES and before.get(k) != v]
    if changed:
        raise ConfigError(f"{out} holds a job with another config ({'; '.join(changed[:4])}{'; ...' if len(changed) > 4 else ''}); "
                          f"running this one there would resume that job's warm start and checkpoints: give another --output-dir, or delete {out}")


def run_job(config: LCPOConfig, device: str | None = None, command: str = "", dataset_policy=None) -> Path:
    """Train (resuming from the last checkpoint in output_dir, if any); return the final model's
    folder (``export_dir`` when set). ``command`` is how the job was started, for the model card;
    ``dataset_policy`` bounds a dataset file (see `training_rows`)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

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
        if config.warm_start_traces:
            from training.budget_sft import warm_start_from_traces

            policy = str(warm_start_from_traces(config))
        elif config.warm_start_problems:
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

"""A tiny process reward model: the policy's backbone with a two-class head on an explicit step tag.

TRL no longer ships a PRM trainer; its labelling rule is small and is what this module does: each
step's tokens, then a step-tag token (``<step>``, added to the policy's tokenizer) that carries the
step's label (1 good, 0 bad: `training.step_data`, from the arith oracle), -100 everywhere else; a
`Qwen2ForTokenClassification` with ``num_labels=2`` warm-started from the policy (the same
tokenizer, so a step's ids at search time are the policy's own ids); transformers' `Trainer`
with `DataCollatorForTokenClassification`, fp32 on the CPU. vLLM serves the result with its
pooling runner (step pooling at the tag's id); `evaluate_prm` measures it against the oracle.

    config = PRMConfig(data_dir="data/prm", output_dir="data/train/tiny-prm")
    run_prm_job(config)        # data if missing, training, final/ with eval.json (held-out policy samples against the oracle)

    python app.py train --config training/configs/tiny-prm.yaml     # the same, from a job file (job: prm)
    python -m training.prm --data-dir data/prm --output-dir data/train/tiny-prm
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from transformers import Trainer

from backend.controllers.prompts import chat_messages
from training.config import _f
from training.step_data import StepExample, label_mix, read_jsonl

STEP_TAG = "<step>"


@dataclass(frozen=True)
class PRMConfig:
    """A PRM training job (``job: prm`` in a job file for ``app.py train``; the flags of ``python -m training.prm``)."""

    policy: str = _f("models/l1-tiny", "The policy whose backbone and tokenizer the PRM starts from (its steps are the policy's ids).")
    output_dir: str = _f("data/train/tiny-prm", "Checkpoints and the final model (final/, with eval.json and a card).")
    data_dir: str = _f("", "Folder with train.jsonl and heldout.jsonl; made there (training.step_data) when missing. Empty: output_dir/data.")
    data_seed: int = _f(5, "Seed of the data: synthetic problems (seed), the policy's training problems (seed + 1), held-out ones (seed + 2).")
    synthetic_examples: int = _f(3000, "Clean and slipped traces of the base model's style.")
    slip_share: float = _f(0.5, "Share of the synthetic traces with a slip carried forward.")
    policy_problems: int = _f(300, "Problems the policy is sampled on for training (x 3 budgets x 2 samples); half as many held out.")
    max_steps: int = _f(600, "Optimizer steps.")
    learning_rate: float = _f(1e-3, "AdamW learning rate (the head is new; the backbone is tiny).")
    per_device_train_batch_size: int = _f(32, "Examples per step.")
    max_length: int = _f(768, "Tokens per example at most (question, steps and their tags); longer ones are cut at a step.")
    good_weight: float = _f(1.0, "Loss weight of a good step's tag relative to a bad one's (the data is mostly good steps).")
    seed: int = _f(0, "Seed of the head's initialisation and of the data order.")

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.learning_rate <= 0 or self.per_device_train_batch_size < 1:
            raise ValueError("max_steps, learning_rate and per_device_train_batch_size must be positive")
        if not 0 <= self.slip_share <= 1:
            raise ValueError(f"slip_share {self.slip_share}: a share between 0 and 1")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(self.output_dir) / "data"


def prm_tokenizer(policy: str | Path):
    """The policy's tokenizer with the step tag added (one new id, after the policy's vocabulary)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.add_special_tokens({"additional_special_tokens": [STEP_TAG]})
    return tokenizer


def encode(tokenizer, example: StepExample, max_length: int) -> dict:
    """Input ids (the question's chat prompt, then each step and its tag) and labels on the tags only."""
    tag = tokenizer.convert_tokens_to_ids(STEP_TAG)
    prompt = tokenizer.apply_chat_template(chat_messages(example.question), tokenize=False, add_generation_prompt=True)
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    labels = [-100] * len(ids)
    for step, good in zip(example.steps, example.labels):
        step_ids = tokenizer(step, add_special_tokens=False)["input_ids"]
        if len(ids) + len(step_ids) + 1 > max_length:
            break
        ids += [*step_ids, tag]
        labels += [-100] * len(step_ids) + [int(good)]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def train_prm(config: PRMConfig) -> Path:
    """Train on data_dir/train.jsonl; returns the final model's folder."""
    import torch
    from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification, TrainingArguments

    torch.manual_seed(config.seed)
    tokenizer = prm_tokenizer(config.policy)
    model = AutoModelForTokenClassification.from_pretrained(config.policy, num_labels=2, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    train = [encode(tokenizer, e, config.max_length) for e in read_jsonl(config.data_path / "train.jsonl")]
    args = TrainingArguments(output_dir=config.output_dir, max_steps=config.max_steps, learning_rate=config.learning_rate,
                             per_device_train_batch_size=config.per_device_train_batch_size, use_cpu=True, bf16=False,
                             logging_steps=20, save_strategy="no", report_to=[], seed=config.seed, lr_scheduler_type="cosine",
                             warmup_steps=max(1, config.max_steps // 20), dataloader_drop_last=True)
    trainer = _WeightedTrainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorForTokenClassification(tokenizer),
                               good_weight=config.good_weight)
    trainer.train()
    final = Path(config.output_dir) / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    (final / "prm_config.json").write_text(json.dumps({**dataclasses.asdict(config), "step_tag": STEP_TAG,
                                                       "step_tag_id": tokenizer.convert_tokens_to_ids(STEP_TAG)}, indent=1))
    return final


class _WeightedTrainer(Trainer):
    """Cross-entropy on the tags with a weight for good steps (bad steps are the rarer, costlier class)."""

    def __init__(self, *args, good_weight: float = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.good_weight = good_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch

        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weight = torch.tensor([1.0, self.good_weight], device=outputs.logits.device)
        loss = torch.nn.functional.cross_entropy(outputs.logits.view(-1, 2), labels.view(-1), weight=weight, ignore_index=-100)
        return (loss, outputs) if return_outputs else loss


def step_scores(model_dir: Path, examples: list[StepExample]) -> list[list[float]]:
    """P(good) at each step tag of each example, with the HF model (what the served PRM must match)."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, dtype=torch.float32).eval()
    tag = tokenizer.convert_tokens_to_ids(STEP_TAG)
    scores = []
    for example in examples:  # one at a time: no padding, so the positions are exactly the served model's
        ids = encode(tokenizer, example, 100_000)["input_ids"]
        with torch.no_grad():
            probs = model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)[:, 1]
        scores.append([float(p) for p, i in zip(probs, ids) if i == tag])
    return scores


def evaluate_prm(model_dir: Path, examples: list[StepExample]) -> dict:
    """Step accuracy, AUROC, first-error detection and calibration against the oracle's labels."""
    scores = step_scores(model_dir, examples)
    return prm_metrics(examples, scores)


def prm_metrics(examples: list[StepExample], scores: list[list[float]]) -> dict:
    pairs = [(s, label) for e, row in zip(examples, scores) for s, label in zip(row, e.labels)]
    good_share = sum(label for _, label in pairs) / len(pairs)
    exact_first = [(_first_below(row), _first_false(e.labels)) for e, row in zip(examples, scores)]
    with_error = [(found, truth) for found, truth in exact_first if truth is not None]
    clean = [found for found, truth in exact_first if truth is None]
    return {
        "steps": len(pairs), "good_share": round(good_share, 4),
        "step_accuracy": round(sum((s >= 0.5) == label for s, label in pairs) / len(pairs), 4),
        "majority_accuracy": round(max(good_share, 1 - good_share), 4),
        "auroc": round(auroc([s for s, _ in pairs], [label for _, label in pairs]), 4),
        "first_error_exact": round(sum(f == t for f, t in with_error) / max(len(with_error), 1), 4),
        "first_error_within_1": round(sum(f is not None and abs(f - t) <= 1 for f, t in with_error) / max(len(with_error), 1), 4),
        "clean_without_alarm": round(sum(f is None for f in clean) / max(len(clean), 1), 4),
        "ece": round(expected_calibration_error([s for s, _ in pairs], [label for _, label in pairs]), 4),
        "traces": len(examples), "traces_with_error": len(with_error),
    }


def _first_below(row: list[float], threshold: float = 0.5) -> int | None:
    return next((i for i, s in enumerate(row) if s < threshold), None)


def _first_false(labels) -> int | None:
    return next((i for i, label in enumerate(labels) if not label), None)


def auroc(scores: list[float], labels: list[bool]) -> float:
    """The probability that a good step outscores a bad one (ties count half): Mann-Whitney."""
    ranked = sorted(zip(scores, labels))
    rank_sum, i, positives = 0.0, 0, sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return float("nan")
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(label for _, label in ranked[i:j]) * (i + j + 1) / 2  # the tie group's mean rank (1-based)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def expected_calibration_error(scores: list[float], labels: list[bool], bins: int = 10) -> float:
    total, error = len(scores), 0.0
    for b in range(bins):
        chosen = [(s, label) for s, label in zip(scores, labels) if b / bins <= s < (b + 1) / bins or (b == bins - 1 and s == 1.0)]
        if chosen:
            error += len(chosen) / total * abs(sum(s for s, _ in chosen) / len(chosen) - sum(label for _, label in chosen) / len(chosen))
    return error


def ensure_data(config: PRMConfig) -> dict:
    """The job's train and held-out files, made when missing; their label mix."""
    from training.step_data import make_data

    folder = config.data_path
    if not (folder / "train.jsonl").is_file() or not (folder / "heldout.jsonl").is_file():
        return make_data(folder, Path(config.policy), config.data_seed, config.synthetic_examples, config.policy_problems, config.slip_share)
    return {"train": label_mix(read_jsonl(folder / "train.jsonl")), "heldout": label_mix(read_jsonl(folder / "heldout.jsonl"))}


def run_prm_job(config: PRMConfig) -> Path:
    """Data (if missing), training, the held-out evaluation against the oracle (final/eval.json) and the card."""
    mix = ensure_data(config)
    final = train_prm(config)
    report = {"heldout": evaluate_prm(final, read_jsonl(config.data_path / "heldout.jsonl")), "data": mix}
    (final / "eval.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report["heldout"]), flush=True)
    return final


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(PRMConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, help=f.metadata["help"])
    run_prm_job(PRMConfig(**vars(parser.parse_args())))


if __name__ == "__main__":
    _main()

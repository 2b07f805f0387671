"""Step-labelled arith traces for a process reward model: exact labels from the oracle, three sources.

Every example is a question, its steps (the lines of a completion) and one label per step from the
arith oracle (`backend.evaluation.oracle.label_steps`: good until the first wrong step). Three
sources, so that the PRM sees the errors it will meet:

* ``clean``: the base model's worked traces (`training.traces`), every step good;
* ``slipped``: the same traces with one operation's column work slipped (a digit or a carry off,
  `training.trace_checks.slipped_work`) and the slip carried forward: every later line is worked
  from the wrong value, consistently, and the answer is wrong. Labels turn bad at the slip;
* ``policy``: the policy's own samples (the shipped L1 model under "Think for N tokens.", sampled
  with transformers at T 0.6), labelled by the oracle: the errors the search will actually meet.

    examples = synthetic_examples(make_problems(seed=5, n=500), random.Random(0), slip_share=0.5)
    examples += policy_examples(Path("models/l1-tiny"), make_problems(seed=6, n=200), budgets=(128, 256, 384))
    write_jsonl(examples, Path("data/prm/train.jsonl"))

    python -m training.step_data --out data/prm --seed 5      # writes train/heldout JSONL and prints their label mix
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.controllers.prompts import chat_messages, l1_exact_prompt
from backend.evaluation.arith import ArithProblem, apply_op, make_problems, parse_question
from backend.evaluation.oracle import label_steps
from training.trace_checks import slipped_work
from training.traces import STEPS_OPENING, column_work, format_completion


POLICY_BUDGETS = (128, 256, 384)  # "Think for N tokens." budgets the policy is sampled at: the low, middle and high trained range


@dataclass(frozen=True)
class StepExample:
    question: str
    steps: tuple[str, ...]  # the completion's lines, each with its newline except maybe the last
    labels: tuple[bool, ...]
    source: str  # clean, slipped or policy
    n_ops: int


def lines_of(completion: str) -> tuple[str, ...]:
    """A completion's steps as text: its lines, each keeping its newline (they rejoin to the completion)."""
    return tuple(line for line in completion.splitlines(keepends=True) if line.strip())


def slipped_completion(problem: ArithProblem, rng: random.Random) -> str | None:
    """The worked trace ("steps" style) with one operation slipped and carried forward; None if no operation can slip."""
    acc, ops = parse_question(problem.question)
    candidates = [i for i in range(len(ops))]
    rng.shuffle(candidates)
    slip_at = None
    for i in candidates:  # the first operation (in random order) whose work can slip, on the true running value
        value = acc
        for op, b in ops[:i]:
            value = apply_op(value, op, b)
        if slipped_work(value, ops[i][0], ops[i][1], random.Random(rng.random())) is not None:
            slip_at = i
            break
    if slip_at is None:
        return None
    lines = [STEPS_OPENING, problem.question.removeprefix("Compute ").removesuffix(".")]
    for i, (op, b) in enumerate(ops):
        if i == slip_at:
            work, acc = slipped_work(acc, op, b, rng)
        elif op == "-" and acc < b:
            return None  # carried forward, the wrong value cannot be worked in columns
        else:
            work, acc = column_work(acc, op, b), apply_op(acc, op, b)
        lines += [work, f"= {acc}" + "".join(f" {o} {x}" for o, x in ops[i + 1:])]
    return format_completion("\n".join([*lines, f"So the answer is {acc}."]), acc)


def synthetic_examples(problems: list[ArithProblem], rng: random.Random, slip_share: float = 0.5) -> list[StepExample]:
    """One example per problem: a slipped trace with probability ``slip_share`` (when one can slip), else a clean one."""
    from training.traces import make_trace

    examples = []
    for problem in problems:
        completion = slipped_completion(problem, rng) if rng.random() < slip_share else None
        source = "slipped" if completion else "clean"
        completion = completion or format_completion(make_trace(problem, rng.choice(("steps", "checked")), rng), problem.answer)
        examples.append(labelled(problem, completion, source))
    return examples


def labelled(problem: ArithProblem, completion: str, source: str) -> StepExample:
    steps = lines_of(completion)
    return StepExample(problem.question, steps, tuple(label_steps(problem.question, list(steps))), source, problem.n_ops)


def policy_examples(model_dir: Path, problems: list[ArithProblem], budgets: tuple[int, ...], samples: int = 2, seed: int = 0,
                    batch_size: int = 64) -> list[StepExample]:
    """The policy's own samples under "Think for N tokens.", labelled by the oracle (transformers on the CPU; the model is tiny)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    jobs = [(problem, budget) for problem in problems for budget in budgets for _ in range(samples)]
    examples = []
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        prompts = [tokenizer.apply_chat_template(chat_messages(l1_exact_prompt(p.question, n)), tokenize=False, add_generation_prompt=True)
                   for p, n in batch]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=True, temperature=0.6, top_p=0.95, max_new_tokens=max(n for _, n in batch) + 64,
                                 pad_token_id=tokenizer.pad_token_id)
        for (problem, _), ids in zip(batch, out[:, inputs["input_ids"].shape[1]:]):
            examples.append(labelled(problem, tokenizer.decode(ids, skip_special_tokens=True), "policy"))
    return examples


def write_jsonl(examples: list[StepExample], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for example in examples:
            f.write(json.dumps(asdict(example)) + "\n")


def read_jsonl(path: Path) -> list[StepExample]:
    return [StepExample(**{**row, "steps": tuple(row["steps"]), "labels": tuple(row["labels"])})
            for row in map(json.loads, path.read_text().splitlines())]


def label_mix(examples: list[StepExample]) -> dict:
    """Per source: examples, steps, share of good steps, share of examples with an error."""
    mix = {}
    for source in sorted({e.source for e in examples}):
        chosen = [e for e in examples if e.source == source]
        steps = [label for e in chosen for label in e.labels]
        mix[source] = {"examples": len(chosen), "steps": len(steps), "good_steps": round(sum(steps) / max(len(steps), 1), 3),
                       "with_error": round(sum(not all(e.labels) for e in chosen) / len(chosen), 3)}
    return mix


def make_data(folder: Path, policy: Path, seed: int, synthetic: int, policy_problems: int, slip_share: float = 0.5) -> dict:
    """train.jsonl (synthetic traces and the policy's samples) and heldout.jsonl (the policy's samples on
    other problems) in ``folder``; returns their label mix."""
    rng = random.Random(seed)
    train = synthetic_examples(make_problems(seed, synthetic), rng, slip_share)
    train += policy_examples(policy, make_problems(seed + 1, policy_problems), budgets=POLICY_BUDGETS, seed=seed)
    heldout = policy_examples(policy, make_problems(seed + 2, max(1, policy_problems // 2)), budgets=POLICY_BUDGETS, seed=seed + 2)
    write_jsonl(train, folder / "train.jsonl")
    write_jsonl(heldout, folder / "heldout.jsonl")
    return {"train": label_mix(train), "heldout": label_mix(heldout)}


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/prm"))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--synthetic", type=int, default=3000, help="synthetic examples (clean and slipped)")
    parser.add_argument("--policy-problems", type=int, default=300, help="problems the policy is sampled on (x budgets x 2 samples)")
    parser.add_argument("--policy", type=Path, default=Path("models/l1-tiny"))
    args = parser.parse_args()
    print(json.dumps(make_data(args.out, args.policy, args.seed, args.synthetic, args.policy_problems)))


if __name__ == "__main__":
    _main()

"""LCPO warm start: the policy's own samples, relabeled with their own lengths (hindsight).

A base reasoning model reads "Think for N tokens." but has never been rewarded for obeying
it, so GRPO's first groups carry almost no length signal, and a model of a few million
parameters on a 2-core CPU cannot afford the thousands of steps it would take to find one.
The warm start is the cheapest on-policy step that gives GRPO that signal (rejection sampling
with hindsight relabeling, as in RAFT / expert iteration):

1. sample completions from the base model with vLLM on the job's training problems
   (plain prompt, ``warm_start_temperature``), in a child process (vLLM builds its engine
   under ``if __name__ == "__main__"`` and pins threads, which the trainer must not inherit);
2. keep the well-formed correct ones, and the wrong ones shorter than any correct sample of
   their problem (the best guess at that length); each becomes an Exact example whose target
   is its own length n ("Think for n tokens.") and a Max example whose target is a little
   above it ("Think for maximum M tokens.", M in [n, slack * n]), within ``[n_min, n_max]``;
3. fine-tune on them (plain PyTorch, like the base model's SFT) for ``warm_start_epochs``.

GRPO with the LCPO reward then starts from the result (``<output_dir>/warm_start``). The
sampling step alone can be run by hand:

    python -m training.warm_start --model models/tiny-r1-base --out /tmp/samples.jsonl --problems 50
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SAMPLES_FILE = "warm_start_samples.jsonl"
SUMMARY_FILE = "warm_start.json"


def sample_with_vllm(model: str, questions: list[dict[str, str]], per_problem: int, temperature: float, max_tokens: int, seed: int, out: Path) -> None:
    """Write one JSON line per completion: question, gold, text, token_ids (EOS included when
    the model stopped), prompt_ids. Runs vLLM offline; call it from a ``__main__`` process."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    from backend.controllers import prompts
    from backend.serving.engine import resolve_dtype

    on_cpu = _on_cpu()
    # No chunked prefill on CPU: seeded requests crash vLLM's CPU sampler with it (as in backend/serving/local.py).
    llm = LLM(model=model, enforce_eager=True, seed=seed, dtype=resolve_dtype("auto", "cpu" if on_cpu else "gpu"),
              enable_chunked_prefill=not on_cpu)
    tokenizer = llm.get_tokenizer()
    prompt_ids = [chat_prompt_ids(tokenizer, prompts.base_prompt(q["question"])) for q in questions]
    params = SamplingParams(n=per_problem, temperature=temperature, max_tokens=max_tokens, seed=seed)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params)
    with out.open("w") as fh:
        for q, ids, result in zip(questions, prompt_ids, outputs):
            for c in result.outputs:
                row = {"question": q["question"], "gold": q["gold"], "text": c.text, "token_ids": list(c.token_ids), "prompt_ids": list(ids)}
                fh.write(json.dumps(row) + "\n")


def chat_prompt_ids(tokenizer, user_text: str) -> list[int]:
    """Token ids of the chat prompt (generation prompt included) for one user message."""
    from backend.controllers import prompts

    ids = tokenizer.apply_chat_template(prompts.chat_messages(user_text), add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def run_sampling(config, questions: list[dict[str, str]], out: Path) -> None:
    """Sample in a child process (see the module docstring) and wait for it."""
    qfile = out.with_suffix(".questions.json")
    qfile.write_text(json.dumps(questions))
    cmd = [sys.executable, "-m", "training.warm_start", "--model", config.base_model, "--questions", str(qfile),
           "--out", str(out), "--per-problem", str(config.warm_start_per_problem),
           "--temperature", str(config.warm_start_temperature), "--max-tokens", str(config.max_completion_length),
           "--seed", str(config.seed)]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"warm-start sampling failed (exit {done.returncode}):\n{tail}")


def relabel(samples: list[dict[str, Any]], mode: str, n_min: int, n_max: int, rng: random.Random, grade_timeout_s: float = 5.0,
            max_slack: float = 1.2) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Training examples (user text, completion token ids) from the samples, and counts.

    ``mode`` is exact, max or both. A well-formed sample (thinking closed, an answer boxed) of
    length n is kept when it is correct, or when it is wrong but shorter than every correct
    sample of its problem: below the length of a worked solution only guesses fit, which is
    what the model must do there; elsewhere a correct sample of the problem shows a better use
    of the tokens (rejection sampling). Exact: a kept sample whose n is in ``[n_min, n_max]``,
    with target n (it did think for n tokens). Max: a kept sample with n <= ``n_max``, with a
    target drawn uniformly in [n, ``max_slack`` * n] (a wrong one's below the shortest correct
    length), raised to ``n_min`` (a shorter completion obeys a larger maximum): the larger the
    slack, the further below N the model learns to keep."""
    from backend.controllers import prompts
    from training.rewards import answer_after_thinking, is_correct

    formed = []
    for s in samples:
        if answer_after_thinking(s["text"]) is not None:
            formed.append((s, len(s["token_ids"]), is_correct(s["text"], s["gold"], timeout_s=grade_timeout_s)))
    shortest_correct: dict[str, int] = {}
    for s, n, correct in formed:
        if correct:
            shortest_correct[s["question"]] = min(n, shortest_correct.get(s["question"], n))
    examples = []
    for s, n, correct in formed:
        shortest = shortest_correct.get(s["question"], math.inf)
        if not correct and n >= shortest:
            continue
        if mode in ("exact", "both") and n_min <= n <= n_max:
            examples.append({"user": prompts.l1_exact_prompt(s["question"], n), "completion_ids": s["token_ids"], "mode": "exact", "target": n})
        if mode in ("max", "both") and n <= n_max:
            top = n * max_slack if correct else min(n * max_slack, shortest - 1)  # >= n: slack >= 1, n < shortest
            target = max(n_min, min(n_max, math.ceil(rng.uniform(n, top))))
            examples.append({"user": prompts.l1_max_prompt(s["question"], target), "completion_ids": s["token_ids"], "mode": "max", "target": target})
    counts = {"samples": len(samples), "well_formed": len(formed), "correct": sum(c for _, _, c in formed), "examples": len(examples),
              "exact_examples": sum(e["mode"] == "exact" for e in examples), "max_examples": sum(e["mode"] == "max" for e in examples)}
    return examples, counts


def encode(tokenizer, examples: list[dict[str, Any]]) -> list[tuple[list[int], int]]:
    """(prompt ids + completion ids, prompt length) for each example; the completion keeps the
    sampled ids as they were (no re-tokenization), EOS included."""
    eos = tokenizer.eos_token_id
    encoded = []
    for e in examples:
        p_ids = chat_prompt_ids(tokenizer, e["user"])
        c_ids = list(e["completion_ids"])
        if not c_ids or c_ids[-1] != eos:
            c_ids.append(eos)
        encoded.append((p_ids + c_ids, len(p_ids)))
    return encoded


def decision_weights(model, pool: list[tuple[list[int], int]], pad: int, strength: float, tokens_per_batch: int = 4096) -> list[tuple[list[int], int, list[float]]]:
    """``pool`` with a loss weight per token: 1 + strength * the base model's entropy (nats) of
    its prediction of that token. Most tokens of a trace are determined by what came before
    (digits of a sum, the rest of a line), so a plain SFT loss is almost all about them; the
    few uncertain ones are the choices that set the length (terse or worked, check this step or
    not, a second pass or not, stop here), which is what the relabeled target teaches."""
    import torch

    order = sorted(range(len(pool)), key=lambda i: len(pool[i][0]))
    out: list = [None] * len(pool)
    i = 0
    with torch.no_grad():
        while i < len(order):
            j = i
            while j < len(order) and (j - i + 1) * len(pool[order[j]][0]) <= tokens_per_batch:
                j += 1
            j = max(j, i + 1)
            chunk = [pool[k] for k in order[i:j]]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for r, (seq, _) in enumerate(chunk):
                ids[r, : len(seq)] = torch.tensor(seq)
                attn[r, : len(seq)] = 1
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits.float(), dim=-1)
            entropy = -(logp.exp() * logp).sum(-1)  # entropy[r, t]: of the prediction of token t + 1
            for r, k in enumerate(order[i:j]):
                seq, n_prompt = pool[k]
                w = [1.0] + [1.0 + strength * float(h) for h in entropy[r, : len(seq) - 1]]
                out[k] = (seq, n_prompt, w)
            i = j
    return out


def warm_start(config, questions: list[dict[str, str]]) -> Path:
    """Run the warm start for an `LCPOConfig` and return the folder of the fine-tuned model.
    A finished warm start (its summary file present) is reused, so a resumed job skips it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.tiny.data import padded_batches
    from training.tiny.sft import train

    out = Path(config.output_dir) / "warm_start"
    if (out / SUMMARY_FILE).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    samples_path = Path(config.output_dir) / SAMPLES_FILE
    expected = len(questions) * config.warm_start_per_problem
    if not samples_path.exists() or sum(1 for _ in samples_path.open()) != expected:
        run_sampling(config, questions, samples_path)  # else: a resumed job reuses its samples
    samples = [json.loads(line) for line in samples_path.read_text().splitlines()]
    t_sampled = time.time()
    rng = random.Random(config.seed)
    examples, counts = relabel(samples, config.mode, config.n_min, config.n_max, rng, config.grade_timeout_s, config.warm_start_max_slack)
    if not examples:
        raise RuntimeError(f"warm start: none of {len(samples)} samples was correct and within [{config.n_min}, {config.n_max}] tokens; "
                           "check the base model with a plain prompt, or set warm_start_problems: 0")
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
    pool = encode(tokenizer, examples)
    if config.warm_start_decision_weight > 0:
        pool = decision_weights(model, pool, tokenizer.pad_token_id, config.warm_start_decision_weight)
    tokens_per_batch = config.warm_start_batch_tokens

    def epochs():
        for _ in range(config.warm_start_epochs):
            yield from padded_batches(pool, tokenizer.pad_token_id, tokens_per_batch, rng)

    n_batches = sum(1 for _ in padded_batches(pool, tokenizer.pad_token_id, tokens_per_batch, random.Random(0)))
    steps = n_batches * config.warm_start_epochs
    info = train(model, tokenizer, config.seed, steps, max_minutes=10_000, lr=config.warm_start_learning_rate,
                 warmup=min(50, steps // 10), tokens_per_batch=tokens_per_batch, data=epochs())
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    summary = counts | {"sampling_seconds": round(t_sampled - t0, 1), "sft": info, "total_seconds": round(time.time() - t0, 1)}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Sample completions for the LCPO warm start with vLLM (one JSON line each).")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--questions", help="JSON list of {question, gold}; default: arith problems (seed 1)")
    ap.add_argument("--problems", type=int, default=50, help="arith problems when --questions is not given")
    ap.add_argument("--per-problem", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.questions:
        questions = json.loads(Path(args.questions).read_text())
    else:
        from backend.evaluation.arith import make_problems

        questions = [{"question": p.question, "gold": str(p.answer)} for p in make_problems(1, args.problems)]
    sample_with_vllm(args.model, questions, args.per_problem, args.temperature, args.max_tokens, args.seed, Path(args.out))


if __name__ == "__main__":
    main()

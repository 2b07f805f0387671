"""Supervised fine-tuning on budget-aware traces, and the greedy length check that judges it.

The warm start of the L1 recipe for the tiny models: the unchanged base model is fine-tuned on
fresh generated examples (`training.budget_traces`: a problem worked for exactly N tokens under
"Think for N tokens.", or for at most M under "Think for maximum M tokens."), with N drawn
uniformly in ``[n_min, n_max]``; no sampling of the base is needed. With ``tick_every`` the tick
tokens are added to the tokenizer (in the model's unused embedding rows: no shape change).

`length_check` decodes fresh problems greedily at a few budgets with transformers and reports
each budget's mean |n - N| / N (or share over M) and accuracy: the numbers of
``models/l1-tiny/EXPERIMENTS.md``. From the shell (one arm of an experiment):

    python -m training.budget_sft --out /tmp/ticks --tick-every 10 --examples 6000 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.controllers.prompts import l1_exact_prompt, l1_max_prompt
from backend.evaluation.arith import make_problems
from training.budget_traces import TraceWriter, tick_tokens
from training.tiny.data import plain_example
from training.tiny.evaluate import parse_output
from training.tiny.tokenizer import encode_example, prompt_text

EVAL_SEED = 4242  # fresh problems: training draws from other seeds


@dataclass(frozen=True)
class BudgetSFTConfig:
    base_model: str = "models/tiny-r1-base"
    out: str = ""
    tick_every: int = 10
    tick_style: str = "token"
    tick_place: str = "lines"
    examples: int = 6000
    max_share: float = 0.0  # share of examples in Max form
    max_close: str = "under"  # how a Max trace stays under M (TraceWriter.at_most)
    plain_share: float = 0.0  # share of examples under the plain prompt, in the base's styles (no ticks)
    tick_noise: float = 0.0  # share of ticked examples given spurious ticks, in the context but out of the loss
    cut_passes: bool = False  # plans whose last re-pass the countdown stops part way
    column_checks: bool = False  # checks by the inverse operation worked in columns
    slip_share: float = 0.0  # share of traces with one operation slipped, caught by its check and worked again
    cut_share: float = 0.0  # share of traces whose next line the countdown stops part way
    close_block: bool = False  # the closing always starts a line at ‹2›
    column_style: str = "compact"  # how each operation is worked (training.traces.column_work)
    close_next_line: bool = False  # the closing block starts the line after the one holding ‹3›
    first_tick_weight: float = 1.0  # loss weight of a ticked trace's first tick (N's digits read from the prompt)
    close_tick_weight: float = 1.0  # loss weight of its ‹2› (with close_block: the decision to close now)
    n_min: int = 64
    n_max: int = 512
    steps: int = 1000  # 0: ``epochs`` passes over the examples
    epochs: int = 1
    lr: float = 1e-3
    batch_tokens: int = 2048
    seed: int = 0
    min_ops: int = 1
    max_ops: int = 6


def add_ticks(tokenizer, model=None, style: str = "token") -> None:
    """Add the tick tokens of ``style``; they must fit the model's embedding rows (the tiny models have 54 unused)."""
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in tick_tokens(style)])
    if model is not None and len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"{len(tokenizer)} tokens with the ticks, but the model has {model.config.vocab_size} embedding rows")


def spurious_ticks(ids: list[int], n_prompt: int, weights: list[float], tick_value: dict[int, int], boundary: set[int],
                   rng: random.Random, count: int) -> tuple[list[int], list[float]]:
    """``ids`` and their loss ``weights`` with ``count`` spurious ticks inserted at word boundaries
    of the thinking, each weighted 0.

    A sampled countdown fails one way above all: a tick whose value is not the last one minus one,
    mostly a copy of an earlier tick when the text around it repeats an earlier line (a re-pass of
    the chain), and the model counts on from the wrong value past N. Here the wrong tick is in
    the context but never a target, and the ticks after it go on with the true count, so the
    model learns to read past one, not to write one. Its value: a copy of an earlier tick (two
    cases in three), else any other tick value."""
    ticks = [i for i in range(n_prompt, len(ids)) if ids[i] in tick_value]
    if len(ticks) < 3:
        return ids, weights
    spots = [i for i in range(ticks[1] + 1, ticks[-2]) if ids[i] in boundary and ids[i - 1] not in tick_value]
    inserted = sorted(rng.sample(spots, min(count, len(spots))), reverse=True)
    by_value = {v: t for t, v in tick_value.items()}
    ids, weights = list(ids), list(weights)
    for spot in inserted:
        current = next(tick_value[ids[i]] for i in range(spot - 1, n_prompt - 1, -1) if ids[i] in tick_value)
        earlier = [tick_value[ids[i]] for i in ticks if i < spot and tick_value[ids[i]] > current + 1]
        others = [v for v in by_value if abs(v - current) > 1]
        value = rng.choice(earlier) if earlier and rng.random() < 2 / 3 else rng.choice(others)
        ids.insert(spot, by_value[value])
        weights.insert(spot, 0.0)
    return ids, weights


def _noise_tables(tokenizer, style: str) -> tuple[dict[int, int], set[int]]:
    """Tick id -> value, and the ids of tokens that begin a word (a space first): where ticks go."""
    tick_value = {tokenizer.convert_tokens_to_ids(t): int(t.strip("‹›")) for t in tick_tokens(style)}
    boundary = {i for t, i in tokenizer.get_vocab().items() if t.startswith("Ġ") and i not in tick_value}
    return tick_value, boundary


def _tick_weights(ids: list[int], n_prompt: int, weights: list[float], tick_value: dict[int, int], config: BudgetSFTConfig) -> list[float]:
    """``weights`` with the first tick (the whole count follows from it, I30-9) and ‹2› (where a
    closing block starts: sampled countdowns that wrote more work there ran away, I30-10) scaled."""
    weights = list(weights)
    ticks = [i for i in range(n_prompt, len(ids)) if ids[i] in tick_value]
    if ticks:
        weights[ticks[0]] *= config.first_tick_weight
    close = next((i for i in ticks if tick_value[ids[i]] == 2), None)
    if close is not None:
        weights[close] *= config.close_tick_weight
    return weights


def budget_examples(tokenizer, writer: TraceWriter, config: BudgetSFTConfig) -> tuple[list[tuple], dict]:
    """(token ids, prompt length[, loss weights]) of ``config.examples`` fresh examples, and counts
    by plan; weights when some tokens are kept out of the loss (a trace's slip, spurious ticks) or
    the first tick or ‹2› weighs more (``first_tick_weight``, ``close_tick_weight``)."""
    pool, plans = _examples(tokenizer, writer, config)
    reweighted = config.tick_every and (config.first_tick_weight, config.close_tick_weight) != (1.0, 1.0)
    if not config.tick_noise and not reweighted and all(weights is None for _, _, weights in pool):
        return [(ids, n_prompt) for ids, n_prompt, _ in pool], plans
    tick_value, boundary = _noise_tables(tokenizer, config.tick_style)
    rng, weighted = random.Random(config.seed + 13), []
    for ids, n_prompt, weights in pool:
        weights = weights or [0.0] * n_prompt + [1.0] * (len(ids) - n_prompt)
        if reweighted:
            weights = _tick_weights(ids, n_prompt, weights, tick_value, config)
        count = 1 + (len(ids) - n_prompt > 250) if config.tick_noise and rng.random() < config.tick_noise else 0
        new_ids, weights = spurious_ticks(ids, n_prompt, weights, tick_value, boundary, rng, count) if count else (ids, weights)
        plans["spurious_ticks"] = plans.get("spurious_ticks", 0) + len(new_ids) - len(ids)
        weighted.append((new_ids, n_prompt, weights))
    return weighted, plans


def masked_weights(tokenizer, ids: list[int], n_prompt: int, completion: str, spans, tick_ids: set[int]) -> list[float] | None:
    """Loss weights of an encoded example whose completion has character ``spans`` to keep out of
    the loss (a slip: `BudgetTrace.masked`); the ticks inside a span stay in (they count right)."""
    if not spans:
        return None
    offsets = tokenizer(completion, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    weights = [0.0] * n_prompt + [1.0] * (len(ids) - n_prompt)
    for j, (start, end) in enumerate(offsets):
        if ids[n_prompt + j] not in tick_ids and any(start < high and end > low for low, high in spans):
            weights[n_prompt + j] = 0.0
    return weights


def _examples(tokenizer, writer: TraceWriter, config: BudgetSFTConfig) -> tuple[list[tuple[list[int], int, list[float] | None]], dict]:
    rng, plain_rng = random.Random(config.seed + 7), random.Random(config.seed + 11)
    pool, plans = [], {"unplaceable": 0}
    tick_ids = set(_noise_tables(tokenizer, config.tick_style)[0]) if config.tick_every else set()
    for problem in make_problems(config.seed + 31_337, config.examples, config.min_ops, config.max_ops):
        if config.plain_share and plain_rng.random() < config.plain_share:
            pool.append((*encode_example(tokenizer, *plain_example(problem, plain_rng, config.column_style)), None))
            plans["plain"] = plans.get("plain", 0) + 1
            continue
        for _ in range(5):  # a target no trace of this problem lands on (rare) is drawn again
            target, exact = rng.randint(config.n_min, config.n_max), rng.random() >= config.max_share
            try:
                trace = writer.exact(problem, target, rng) if exact else writer.at_most(problem, target, rng)
            except ValueError:
                plans["unplaceable"] += 1
                continue
            prompt = l1_exact_prompt(problem.question, target) if exact else l1_max_prompt(problem.question, target)
            ids, n_prompt = encode_example(tokenizer, prompt, trace.completion)
            pool.append((ids, n_prompt, masked_weights(tokenizer, ids, n_prompt, trace.completion, trace.masked, tick_ids)))
            kind = trace.plan.rstrip("0123456789")
            plans[kind] = plans.get(kind, 0) + 1
            plans["slips"] = plans.get("slips", 0) + bool(trace.masked)
            break
    return pool, plans


def finetune(config: BudgetSFTConfig) -> dict:
    """SFT of the base on generated examples; saves model and tokenizer in ``config.out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.tiny.data import padded_batches
    from training.tiny.sft import train

    torch.set_num_threads(2)
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
    if config.tick_every:
        add_ticks(tokenizer, model, config.tick_style)
    pool, plans = budget_examples(tokenizer, TraceWriter(tokenizer, tick_every=config.tick_every, tick_style=config.tick_style, tick_place=config.tick_place,
                                                 max_close=config.max_close, cut_passes=config.cut_passes,
                                                 column_checks=config.column_checks, slip_share=config.slip_share,
                                                 cut_share=config.cut_share, close_block=config.close_block,
                                                 column_style=config.column_style, close_next_line=config.close_next_line), config)
    rng = random.Random(config.seed)

    def batches():
        while True:
            yield from padded_batches(pool, tokenizer.pad_token_id, config.batch_tokens, rng)

    steps = config.steps or config.epochs * sum(1 for _ in padded_batches(pool, tokenizer.pad_token_id, config.batch_tokens, random.Random(0)))
    info = train(model, tokenizer, config.seed, steps, max_minutes=10_000, lr=config.lr, warmup=min(50, steps // 10),
                 tokens_per_batch=config.batch_tokens, data=batches(), log_every=100)
    out = Path(config.out)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"config": asdict(config), "plans": plans, "sft": info, "seconds": round(time.time() - t0, 1)}


def warm_start_from_traces(config) -> Path:
    """The LCPO warm start on budget-aware traces for an `LCPOConfig` (``warm_start_traces``): the
    fine-tuned model's folder, ``<output_dir>/warm_start``; a finished one is reused."""
    from training.warm_start import SUMMARY_FILE

    out = Path(config.output_dir) / "warm_start"
    if (out / SUMMARY_FILE).exists():
        return out
    sft = BudgetSFTConfig(
        base_model=config.base_model, out=str(out), tick_every=config.warm_start_tick_every, tick_style=config.warm_start_tick_style,
        tick_place=config.warm_start_tick_place, max_close=config.warm_start_max_close, plain_share=config.warm_start_plain_share,
        tick_noise=config.warm_start_tick_noise, cut_passes=config.warm_start_cut_passes, column_checks=config.warm_start_column_checks,
        slip_share=config.warm_start_slip_share, cut_share=config.warm_start_cut_share,
        close_block=config.warm_start_close_block, column_style=config.warm_start_column_style,
        first_tick_weight=config.warm_start_first_tick_weight,
        close_tick_weight=config.warm_start_close_tick_weight, close_next_line=config.warm_start_close_next_line, examples=config.warm_start_traces, max_share={"exact": 0.0, "max": 1.0}.get(config.mode, 0.5),
        n_min=config.warm_start_n_min or config.n_min, n_max=config.warm_start_n_max or config.n_max, steps=config.warm_start_steps, epochs=config.warm_start_epochs, lr=config.warm_start_learning_rate,
        batch_tokens=config.warm_start_batch_tokens, seed=config.seed, min_ops=config.arith_min_ops, max_ops=config.arith_max_ops)
    summary = finetune(sft)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return out


def length_check(model_dir: str | Path, budgets=(64, 243, 512), n: int = 40, mode: str = "exact", seed: int = EVAL_SEED,
                 batch_size: int = 20) -> dict:
    """Greedy decoding of ``n`` fresh problems at each budget: mean |n - N| / N (exact) or share
    over N (max), accuracy, mean tokens; n counts every completion token and the end token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    problems = make_problems(seed, n)
    prompt_of = l1_exact_prompt if mode == "exact" else l1_max_prompt
    result = {}
    for budget in budgets:
        rows = []
        for i in range(0, n, batch_size):
            chunk = problems[i:i + batch_size]
            rows += _decode(model, tokenizer, [prompt_of(p.question, budget) for p in chunk], chunk, budget)
        result[budget] = _budget_summary(rows, budget, mode)
    return result


def _decode(model, tokenizer, prompts: list[str], problems, budget: int) -> list[dict]:
    import torch

    eos = tokenizer.eos_token_id
    tokenizer.padding_side = "left"
    enc = tokenizer([prompt_text(tokenizer, p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = "right"
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=2 * budget + 64, do_sample=False, top_p=None, top_k=None, temperature=None,
                             pad_token_id=eos, eos_token_id=eos)
    rows = []
    for problem, ids in zip(problems, out[:, enc["input_ids"].shape[1]:].tolist()):
        length = ids.index(eos) + 1 if eos in ids else len(ids)
        ok, got = parse_output(tokenizer.decode(ids[:length], skip_special_tokens=True))
        rows.append({"tokens": length, "correct": ok and got == problem.answer})
    return rows


def _budget_summary(rows: list[dict], budget: int, mode: str) -> dict:
    k = len(rows)
    summary = {"accuracy": round(sum(r["correct"] for r in rows) / k, 3), "mean_tokens": round(sum(r["tokens"] for r in rows) / k, 1)}
    if mode == "exact":
        summary["mean_abs_rel_dev"] = round(sum(abs(r["tokens"] - budget) / budget for r in rows) / k, 4)
    else:
        summary["over_budget"] = round(sum(r["tokens"] > budget for r in rows) / k, 3)
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="SFT a tiny base model on budget-aware traces, then check its lengths greedily.")
    for name, default in asdict(BudgetSFTConfig()).items():
        ap.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    ap.add_argument("--check-only", action="store_true", help="only the length check of --out")
    args = vars(ap.parse_args(argv))
    check_only = args.pop("check_only")
    config = BudgetSFTConfig(**args)
    report = {} if check_only else finetune(config)
    report["exact"] = length_check(config.out)
    print(json.dumps(report, indent=1), flush=True)
    (Path(config.out) / "budget_sft.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()

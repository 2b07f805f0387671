"""Why a countdown model misses its budget: sampled outputs sorted by what went wrong.

The quality bench (`bench/tiny_l1_quality.py`) says how far lengths fall from N; this says why,
sample by sample, for a model whose thinking carries countdown ticks (`training.budget_traces`):

- ``first_tick``: the first tick against N // 10 (the value a trace of N tokens starts with);
- ``steps``: consecutive ticks that do not step down by one (a misread tick restarts the count);
- ``closed``: the thinking closed by ``‹0›`` and ``</think>``; ``runaway``: not closed, or more
  than 20 tokens past N (Exact) / over M (Max);
- the length error of the samples that did close, apart from the runaways (the two add up to
  the mean |n - N| / N the bench reports);
- for Max, how far under M the samples land (the margin the traces teach is 6-15%);
- for each wrong answer, the first column-work line that went wrong and how (`first_slip`): a
  borrow decided wrong, a carry dropped, a digit misread, a step's sum, the result read back
  from the steps, or an operation that is not the problem's.

It samples with vLLM offline (the paper's T = 0.6, top_p = 0.95, the l1 controllers' cap
max(2N, N + 256)), on fresh arith problems, and prints one table per mode and a JSON line::

    python -m training.countdown_check --model /tmp/runs/r4s1/final --budgets 64,95,154,167,323,494 --questions 100 --samples 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from collections import Counter
from pathlib import Path

TICK = re.compile(r"‹(\d+)›")
COLUMN_LINE = re.compile(r"(\d+) ([+-]) (\d+): ([^\n]*?), so (\d+)\.")
ANSWER_ROOM = 256  # the l1 controllers' answer_max_tokens: cap = max(2N, N + 256), as in backend/controllers/prompted.py
RUNAWAY_SLACK = 20  # tokens past N that count as a run past the countdown rather than a counting error


def classify(text: str, tokens: int, budget: int, mode: str, correct: bool) -> dict:
    """One sample's facts: ticks, closing, runaway, length error."""
    thinking = text.split("</think>")[0]
    ticks = [int(v) for v in TICK.findall(thinking)]
    steps_ok = sum(b == a - 1 for a, b in zip(ticks, ticks[1:]))
    closed = "</think>" in text and bool(ticks) and ticks[-1] == 0
    over = tokens - budget
    runaway = not closed or (over > RUNAWAY_SLACK if mode == "exact" else over > 0 and not closed)
    return {"budget": budget, "mode": mode, "tokens": tokens, "correct": correct, "first_tick": ticks[0] if ticks else None,
            "ticks": len(ticks), "bad_steps": max(0, len(ticks) - 1 - steps_ok), "closed": closed, "runaway": runaway,
            "rel_dev": abs(tokens - budget) / budget, "over": tokens > budget}


def _column_steps(steps: str, op: str) -> list[str]:
    """A column work's steps; an explicit borrow ("2 - 3 - 1 < 0, 12 - 3 - 1 = 8") is one step."""
    out = []
    for part in steps.split(", "):
        if out and out[-1].endswith("< 0"):
            out[-1] += ", " + part
        else:
            out.append(part)
    return out


def _step_slip(step: str, ref: str, op: str) -> str:
    """How one column step differs from the right one."""
    left, right = step.split(" = ", 1)[0], ref.split(" = ", 1)[0]
    if left == right:
        return "step sum wrong"
    if ("< 0" in step) != ("< 0" in ref):
        return "borrow decided wrong"
    mine, theirs = left.rsplit(", ", 1)[-1].split(f" {op} "), right.rsplit(", ", 1)[-1].split(f" {op} ")
    if mine[0] != theirs[0] and (mine[0] == "1" + theirs[0] or theirs[0] == "1" + mine[0]):
        return "borrow decided wrong"
    return "carry dropped or added" if len(mine) != len(theirs) else "digit misread"


def first_slip(text: str, question: str) -> str:
    """What the first wrong column-work line of a sample got wrong (see the module docstring)."""
    from backend.evaluation.arith import apply_op, parse_question
    from training.traces import column_work

    thinking = TICK.sub("", text.split("</think>")[0])
    style = "explicit" if " < 0, " in thinking else "compact"
    acc, ops = parse_question(question)
    expected = set()
    for op, b in ops:
        expected.add((acc, op, b))
        acc = apply_op(acc, op, b)
    for m in COLUMN_LINE.finditer(thinking):
        a, op, b = int(m[1]), m[2], int(m[3])
        if (a, op, b) not in expected:
            return "an operation not in the problem"
        ref = column_work(a, op, b, style)
        if m[0] == ref:
            continue
        steps, refs = _column_steps(m[4], op), _column_steps(ref.split(": ", 1)[1].rsplit(", so ", 1)[0], op)
        for step, right in zip(steps, refs):
            if step != right:
                return _step_slip(step, right, op)
        return "result read back wrong" if len(steps) == len(refs) else "a digit column missed"
    return "no wrong column line"


def summarize(rows: list[dict]) -> dict:
    """Per-budget figures of one mode."""
    budget = rows[0]["budget"]
    n = len(rows)
    kept = [r for r in rows if not r["runaway"]]
    first = [r["first_tick"] for r in rows if r["first_tick"] is not None]
    return {
        "budget": budget, "samples": n, "accuracy": sum(r["correct"] for r in rows) / n,
        "mean_tokens": statistics.fmean(r["tokens"] for r in rows),
        "mean_abs_rel_dev": statistics.fmean(r["rel_dev"] for r in rows),
        "runaway_share": 1 - len(kept) / n,
        "dev_of_runaways": sum(r["rel_dev"] for r in rows if r["runaway"]) / n,  # their part of mean_abs_rel_dev
        "dev_of_closed": statistics.fmean(r["rel_dev"] for r in kept) if kept else None,
        "over_share": sum(r["over"] for r in rows) / n,
        "first_tick_right": sum(v == budget // 10 for v in first) / max(1, len(first)),
        "first_tick_off": sorted({v - budget // 10 for v in first if v != budget // 10}),
        "bad_step_share": sum(r["bad_steps"] for r in rows) / max(1, sum(max(0, r["ticks"] - 1) for r in rows)),
        "mean_under_m": statistics.fmean((budget - r["tokens"]) / budget for r in kept) if kept else None,
        "slips": dict(Counter(r["slip"] for r in rows if not r["correct"] and "slip" in r).most_common()),
    }


def sample(model: str, budgets: list[int], modes: list[str], questions: int, samples: int, seed: int) -> list[dict]:
    """Sample every (mode, budget, question) ``samples`` times with vLLM offline; classified rows."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    from backend.controllers.prompts import l1_exact_prompt, l1_max_prompt
    from backend.evaluation.arith import make_problems
    from training.tiny.evaluate import parse_output
    from training.warm_start import chat_prompt_ids

    llm = LLM(model=model, enforce_eager=True, seed=seed, dtype="float32", enable_chunked_prefill=False, max_model_len=2048)
    tokenizer = llm.get_tokenizer()
    problems = make_problems(seed, questions)
    jobs, prompts = [], []
    for mode in modes:
        prompt_of = l1_exact_prompt if mode == "exact" else l1_max_prompt
        for budget in budgets:
            for p in problems:
                jobs.append((mode, budget, p))
                prompts.append({"prompt_token_ids": chat_prompt_ids(tokenizer, prompt_of(p.question, budget))})
    params = [SamplingParams(n=samples, temperature=0.6, top_p=0.95, max_tokens=max(2 * b, b + ANSWER_ROOM), seed=seed + i)
              for i, (_, b, _) in enumerate(jobs)]
    rows = []
    for (mode, budget, problem), out in zip(jobs, llm.generate(prompts, params, use_tqdm=False)):
        for c in out.outputs:
            ok, got = parse_output(c.text)
            row = classify(c.text, len(c.token_ids), budget, mode, ok and got == problem.answer)
            slip = {} if row["correct"] else {"slip": first_slip(c.text, problem.question)}
            rows.append(row | slip | {"question": problem.question, "text": c.text})
    return rows


def report(rows: list[dict], modes: list[str], budgets: list[int]) -> dict:
    result = {}
    for mode in modes:
        table = [summarize([r for r in rows if r["mode"] == mode and r["budget"] == b]) for b in budgets]
        result[mode] = table
        print(f"\n{mode}: budget | acc | mean n | dev | runaway share (its dev) | dev of closed | over | first tick right | bad steps | under M")
        for s in table:
            closed = f"{s['dev_of_closed']:.1%}" if s["dev_of_closed"] is not None else "-"
            under = f"{s['mean_under_m']:.1%}" if s["mean_under_m"] is not None else "-"
            print(f"  {s['budget']:4d} | {s['accuracy']:.1%} | {s['mean_tokens']:.1f} | {s['mean_abs_rel_dev']:.1%} | "
                  f"{s['runaway_share']:.1%} ({s['dev_of_runaways']:.1%}) | {closed} | {s['over_share']:.1%} | "
                  f"{s['first_tick_right']:.0%} {s['first_tick_off']} | {s['bad_step_share']:.1%} | {under}")
        for s in table:
            print(f"  {s['budget']:4d} wrong answers, first slip: " + ", ".join(f"{k} {v}" for k, v in s["slips"].items()))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--budgets", default="64,95,154,167,247,323,408,494")
    ap.add_argument("--modes", default="exact,max")
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5151, help="arith problem seed (not a training or bench seed)")
    ap.add_argument("--dump", default="", help="JSONL file for every sample (text included)")
    args = ap.parse_args(argv)
    budgets, modes = [int(b) for b in args.budgets.split(",")], args.modes.split(",")
    rows = sample(args.model, budgets, modes, args.questions, args.samples, args.seed)
    if args.dump:
        Path(args.dump).write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = report(rows, modes, budgets)
    print(json.dumps({"model": args.model, "seed": args.seed, "questions": args.questions, "samples": args.samples, **result}))


if __name__ == "__main__":
    main()

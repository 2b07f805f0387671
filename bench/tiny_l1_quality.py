"""Quality bars of the shipped tiny L1 model, measured through the app's own sweep.

Two sweeps on fresh arith problems (``--seed``, a seed that no training stream uses), through
the service's sweep (the app built by ``open_app``) and the app's vLLM server (controllers, grading and the DuckDB
store as in ``app.py sweep``), the paper's sampling (temperature 0.6, top_p 0.95):

1. the L1 model with ``l1_exact`` and ``l1_max`` at ``--budgets`` (default: 6 budgets spread
   over the trained range ``[n_min, n_max]`` read from the model's ``lcpo_config.json``);
2. the base model with ``s1`` budget forcing at the two smallest of those budgets.

It prints one row per budget and the bars of issue 21, each with its measured value:

- Exact: mean |n_y - N| / N <= 5%;      - Max: share of outputs with n_y > N <= 3%;
- accuracy rises with the budget (each mode): no budget's accuracy more than 6 points below the
  best accuracy at a smaller budget, at least 80% at the largest budget, and at least 40 points
  above the smallest budget's;
- L1 (Exact) at least 10 points above s1 on the base model at the two smallest budgets.

It also reports the share of the L1 model's thinking tokens that are countdown ticks (``‹k›``),
and Spearman(budget, accuracy) for reference.

The last stdout line is one JSON object. ``--write-card`` puts the table into the model card
between ``<!-- quality:start -->`` and ``<!-- quality:end -->`` (training/model_card.py)::

    python bench/tiny_l1_quality.py                                   # ~5 min on 2 cores
    python bench/tiny_l1_quality.py --l1-model /tmp/l1/final --questions 40 --samples 2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from backend.evaluation.arith import parse_question  # noqa: E402
from backend.factory import open_app  # noqa: E402
from backend.service.compare import CompareRequest  # noqa: E402
from backend.service.examples import builtin_examples  # noqa: E402
from backend.service.sweep_plan import SweepRequest  # noqa: E402
from backend.serving.engine import detect_device  # noqa: E402
from backend.serving.registry import ModelRegistry  # noqa: E402
from backend.settings import REPO_ROOT, AppSettings  # noqa: E402
from store import queries  # noqa: E402
from training.model_card import EXAMPLE_END, EXAMPLE_START, replace_card_block  # noqa: E402

BARS = {"exact_mean_abs_rel_dev_max": 0.05, "max_over_budget_max": 0.03, "drop_below_best_smaller_max": 0.06,
        "accuracy_at_largest_min": 0.80, "largest_over_smallest_min": 0.40, "gain_vs_s1_min": 0.10}
TICK = re.compile(r"‹\d+›")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--l1-model", default="l1-tiny", help="registered name or folder of the LCPO model")
    parser.add_argument("--base-model", default="tiny-r1-base", help="the model s1 runs on")
    parser.add_argument("--budgets", default="", help="comma-separated; default: 6 over the model's trained range")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=777, help="arith problem seed (training uses 1, 501 and 2000+)")
    parser.add_argument("--write-card", default="", help="model card (README.md) to put the table into")
    return parser.parse_args()


def trained_range(model_dir: str) -> tuple[int, int]:
    config = json.loads((Path(model_dir) / "lcpo_config.json").read_text())
    return config["n_min"], config["n_max"]


def spread(n_min: int, n_max: int, count: int = 6) -> tuple[int, ...]:
    """``count`` budgets from n_min to n_max, evenly spaced (rounded to whole tokens)."""
    return tuple(round(n_min + (n_max - n_min) * i / (count - 1)) for i in range(count))


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else 0.0


def worst_drop(accuracies: list[float]) -> float:
    """The largest amount by which a budget's accuracy falls below the best at a smaller budget (0 if none)."""
    return max([0.0] + [max(accuracies[:i]) - a for i, a in enumerate(accuracies) if i])


def run_sweeps(settings: AppSettings, requests: list[SweepRequest], workdir: Path, example: CompareRequest) -> tuple[list[dict], float, dict]:
    """The sweeps' summary groups, the share of the first run's thinking tokens that are ticks,
    and the Compare result of ``example`` (as the Compare tab runs it)."""
    settings = dataclasses.replace(settings, db=str(workdir / "bench.duckdb"), data_dir=str(workdir))
    groups = []
    with open_app(settings, env=os.environ, shell=True) as app:  # a command-line tool: any model folder
        for request in requests:
            outcome = asyncio.run(app.service.sweep(request))
            if outcome.progress.failed:
                raise RuntimeError(f"{outcome.progress.failed} generations failed: {outcome.progress.last_error}")
            groups += outcome.summary
        compared = asyncio.run(app.service.compare(example))
        with app.store.reader() as cur:
            rows = queries.get_generations(cur, requests[0].run)
    ticks = sum(len(TICK.findall(r["thinking_text"] or "")) for r in rows)
    return groups, ticks / max(1, sum(r["thinking_tokens"] or 0 for r in rows)), compared


def example_request(model: str, budgets: tuple[int, ...]) -> CompareRequest:
    """The Compare tab's first built-in arith example of three or more operations, L1 Exact at the
    smallest, a middle and the largest budget, a fixed seed."""
    example = next(e for e in builtin_examples() if e.label.startswith("arith") and len(parse_question(e.question)[1]) >= 3)
    return CompareRequest(question=example.question, model=model, budgets=(budgets[0], budgets[len(budgets) // 2 - 1], budgets[-1]),
                          controllers=("l1_exact",), gold=example.gold, seed=0)


def example_text(compared: dict, temperature: float, top_p: float) -> str:
    """The Compare result as markdown: the question, then each budget's whole output."""
    lines = [f"The Compare tab on its built-in question \"{compared['question']}\" (gold {compared['gold']}), L1 Exact, "
             f"seed 0, temperature {temperature}, top_p {top_p}; the output as generated, countdown ticks included:"]
    for g in compared["generations"]:
        verdict = "correct" if g["correct"] else "wrong"
        lines += ["", f"**N = {g['budget']}: {g['total_tokens']} tokens** ({g['thinking_tokens']} thinking), answer "
                      f"{g['extracted_answer']} ({verdict})", "", "```text", g["full_text"].strip(), "```"]
    return "\n".join(lines)


def measure(groups: list[dict], l1_name: str, base_name: str, budgets: tuple[int, ...]) -> dict:
    def group(model, controller, budget):
        return next(g for g in groups if (g["model"], g["controller"], g["budget"]) == (model, controller, budget))

    rows = []
    for b in budgets:
        ex, mx = group(l1_name, "l1_exact", b), group(l1_name, "l1_max", b)
        row = {"budget": b, "exact_accuracy": ex["pass_at_1"], "exact_mean_tokens": ex["mean_tokens"],
               "exact_mean_abs_rel_dev": ex["mean_abs_rel_dev"], "max_accuracy": mx["pass_at_1"],
               "max_mean_tokens": mx["mean_tokens"], "max_over_budget": mx["violation_rate"]}
        if b in budgets[:2]:
            row["s1_base_accuracy"] = group(base_name, "s1", b)["pass_at_1"]
        rows.append(row)
    gens = {m: sum(group(l1_name, m, b)["generations"] for b in budgets) for m in ("l1_exact", "l1_max")}
    exact_dev = sum(group(l1_name, "l1_exact", b)["mean_abs_rel_dev"] * group(l1_name, "l1_exact", b)["generations"] for b in budgets) / gens["l1_exact"]
    over = sum(group(l1_name, "l1_max", b)["violation_rate"] * group(l1_name, "l1_max", b)["generations"] for b in budgets) / gens["l1_max"]
    figures = {
        "exact_mean_abs_rel_dev": exact_dev,
        "max_over_budget": over,
        "exact_spearman": spearman(list(budgets), [r["exact_accuracy"] for r in rows]),
        "max_spearman": spearman(list(budgets), [r["max_accuracy"] for r in rows]),
        "exact_accuracy_at_largest": rows[-1]["exact_accuracy"],
        "max_accuracy_at_largest": rows[-1]["max_accuracy"],
        "gain_vs_s1": [r["exact_accuracy"] - r["s1_base_accuracy"] for r in rows[:2]],
        "exact_largest_over_smallest": rows[-1]["exact_accuracy"] - rows[0]["exact_accuracy"],
        "max_largest_over_smallest": rows[-1]["max_accuracy"] - rows[0]["max_accuracy"],
        "exact_worst_drop": worst_drop([r["exact_accuracy"] for r in rows]),
        "max_worst_drop": worst_drop([r["max_accuracy"] for r in rows]),
    }
    bars = {
        "exact_dev": figures["exact_mean_abs_rel_dev"] <= BARS["exact_mean_abs_rel_dev_max"],
        "max_over_budget": figures["max_over_budget"] <= BARS["max_over_budget_max"],
        "rises_with_budget": max(figures["exact_worst_drop"], figures["max_worst_drop"]) <= BARS["drop_below_best_smaller_max"],
        "accuracy_at_largest": min(figures["exact_accuracy_at_largest"], figures["max_accuracy_at_largest"]) >= BARS["accuracy_at_largest_min"],
        "largest_over_smallest": min(figures["exact_largest_over_smallest"], figures["max_largest_over_smallest"]) >= BARS["largest_over_smallest_min"],
        "gain_vs_s1": min(figures["gain_vs_s1"]) >= BARS["gain_vs_s1_min"],
    }
    return {"rows": rows, "figures": figures, "bars": bars}


def table(result: dict, questions: int, samples: int, seed: int) -> str:
    f = result["figures"]
    lines = [f"{questions} fresh arith problems (seed {seed}) x {samples} samples per budget, temperature 0.6, top_p 0.95, "
             "through the app's sweep (vLLM on CPU).", "",
             "| budget N | Exact accuracy | Exact mean tokens | Exact mean abs(n-N)/N | Max accuracy | Max mean tokens | Max share n > N | s1 on base accuracy |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        s1 = f"{r['s1_base_accuracy']:.1%}" if "s1_base_accuracy" in r else ""
        lines.append(f"| {r['budget']} | {r['exact_accuracy']:.1%} | {r['exact_mean_tokens']:.1f} | {r['exact_mean_abs_rel_dev']:.1%} | "
                     f"{r['max_accuracy']:.1%} | {r['max_mean_tokens']:.1f} | {r['max_over_budget']:.1%} | {s1} |")
    ok = result["bars"]
    mark = {True: "met", False: "MISSED"}
    lines += ["",
              f"- Exact mean abs(n-N)/N over all budgets: {f['exact_mean_abs_rel_dev']:.1%} (bar <= 5%: {mark[ok['exact_dev']]})",
              f"- Max share of outputs over budget: {f['max_over_budget']:.1%} (bar <= 3%: {mark[ok['max_over_budget']]})",
              f"- accuracy rises with the budget: worst drop below the best at a smaller budget Exact {f['exact_worst_drop'] * 100:.1f}, "
              f"Max {f['max_worst_drop'] * 100:.1f} points (bar <= 6: {mark[ok['rises_with_budget']]}); Spearman Exact {f['exact_spearman']:.2f}, Max {f['max_spearman']:.2f}",
              f"- accuracy at the largest budget: Exact {f['exact_accuracy_at_largest']:.1%}, Max {f['max_accuracy_at_largest']:.1%} (bar >= 80%: {mark[ok['accuracy_at_largest']]})",
              f"- largest minus smallest budget's accuracy: Exact {f['exact_largest_over_smallest'] * 100:+.1f}, Max {f['max_largest_over_smallest'] * 100:+.1f} points "
              f"(bar >= +40: {mark[ok['largest_over_smallest']]})",
              f"- Exact minus s1-on-base at the two smallest budgets: {', '.join(f'{g * 100:+.1f}' for g in f['gain_vs_s1'])} points "
              f"(bar >= +10: {mark[ok['gain_vs_s1']]})",
              f"- countdown ticks: {f.get('tick_share_of_thinking', 0.0):.1%} of the L1 model's thinking tokens"]
    return "\n".join(lines)


def write_card(path: Path, text: str, example: str) -> None:
    card = path.read_text() if path.exists() else ""
    card = replace_card_block(card, text)
    path.write_text(replace_card_block(card, example, EXAMPLE_START, EXAMPLE_END, heading="A Compare example"))


def main() -> None:
    args = parse_args()
    registry = ModelRegistry(REPO_ROOT / "models")
    l1, base = registry.resolve(args.l1_model), registry.resolve(args.base_model)
    budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else spread(*trained_range(l1.source))
    settings = AppSettings(model=l1.name, engine_max_model_len=2048, engine_kv_cache_gib=1)
    common = dict(dataset="arith", samples=args.samples, limit=args.questions, seed=args.seed, concurrency=256)
    requests = [SweepRequest(models=(l1.source,), controllers=("l1_exact", "l1_max"), budgets=budgets, run="quality-l1", **common),
                SweepRequest(models=(base.source,), controllers=("s1",), budgets=budgets[:2], run="quality-s1", **common)]
    print(f"budgets {budgets}; {args.questions} questions x {args.samples} samples; L1 {l1.name} ({l1.source}); base {base.name}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        groups, tick_share, compared = run_sweeps(settings, requests, Path(tmp), example_request(l1.source, budgets))
    result = measure(groups, l1.name, base.name, budgets)
    result["figures"]["tick_share_of_thinking"] = tick_share
    text = table(result, args.questions, args.samples, args.seed)
    example = example_text(compared, settings.temperature, settings.top_p)
    print(text, "", example, sep="\n", flush=True)
    if args.write_card:
        write_card(Path(args.write_card), text, example)
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores, {detect_device()}", "l1_model": l1.name,
                      "base_model": base.name, "budgets": budgets, "questions": args.questions, "samples": args.samples,
                      "seed": args.seed, "wall_s": round(time.perf_counter() - started, 1), **result["figures"],
                      "bars_met": result["bars"], "rows": result["rows"]}))


if __name__ == "__main__":
    main()

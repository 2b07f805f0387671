"""Quality bars of the shipped tiny L1 model, measured through the app's own sweep, on two seeds.

For each of ``--seeds`` (arith problem seeds that no training stream uses), sweeps through the
service (the app built by ``open_app``, its vLLM server, controllers, grading and DuckDB store as
in ``app.py sweep``), at the paper's sampling (temperature 0.6, top_p 0.95):

1. the L1 model with ``l1_exact`` and ``l1_max`` at six budgets: ``--budgets``, or by default
   drawn from the seed, one in each sixth of the trained range ``[n_min, n_max]`` (its
   ``lcpo_config.json``), never one of the card's evenly spread budgets nor the UI's suggested
   ones: budgets nobody tuned on, as a user types them;
2. the base model with ``s1`` budget forcing at the two smallest of those budgets.

It prints one table per seed and issue 30's bars, each with its measured value, per seed:

- Exact: mean |n_y - N| / N <= 5% over all budgets, and <= 3% at every budget >= 150;
- Max: share of outputs with n_y > N <= 3% at every budget;
- accuracy rises with the budget (each mode): no budget's accuracy more than 6 points below the
  best accuracy at a smaller budget, at least 88% at the largest budget, and at least 40 points
  above the smallest budget's;
- reported, not a bar: L1 (Exact) minus s1 on the base model at the two smallest budgets, the
  share of the L1 model's thinking tokens that are countdown ticks (``‹k›``), Spearman(budget, accuracy).

``--plain`` also sweeps the plain-prompt controllers (s1, hard_cap, thinking_cap, early_exit,
no_thinking) on both models at ``--plain-budgets``: an L1 model should keep its base's reasoning there.

The last stdout line is one JSON object. ``--write-card`` puts the tables into the model card
between ``<!-- quality:start -->`` and ``<!-- quality:end -->`` (training/model_card.py)::

    python bench/tiny_l1_quality.py                                    # ~15 min on 2 cores
    python bench/tiny_l1_quality.py --l1-model /tmp/l1/final --seeds 5 --questions 40 --samples 2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import platform
import random
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
from backend.serving.registry import TINY_BUDGETS, ModelRegistry  # noqa: E402
from backend.settings import REPO_ROOT, AppSettings  # noqa: E402
from store import queries  # noqa: E402
from training.model_card import EXAMPLE_END, EXAMPLE_START, replace_card_block  # noqa: E402

BARS = {"exact_mean_abs_rel_dev_max": 0.05, "exact_dev_per_budget_max": 0.03, "exact_dev_per_budget_from": 150,
        "max_over_budget_max": 0.03, "drop_below_best_smaller_max": 0.06, "accuracy_at_largest_min": 0.88,
        "largest_over_smallest_min": 0.40}
REPORTED = {"gain_vs_s1_min": 0.10}  # the figure, reported next to the bars but not one of them
PLAIN_CONTROLLERS = ("s1", "hard_cap", "thinking_cap", "early_exit", "no_thinking")
TICK = re.compile(r"‹\d+›")
DEFAULT_SEEDS = "31001,31002"  # no training stream uses these (training: 1, 501, 2000+, 31337 + seed)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--l1-model", default="l1-tiny", help="registered name or folder of the LCPO model")
    parser.add_argument("--base-model", default="tiny-r1-base", help="the model s1 runs on")
    parser.add_argument("--budgets", default="", help="comma-separated, the same for every seed; default: six drawn from each seed")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--seeds", default=DEFAULT_SEEDS, help="arith problem seeds, comma-separated: one table each")
    parser.add_argument("--plain", action="store_true", help="also the plain-prompt controllers on both models")
    parser.add_argument("--plain-budgets", default="128,256")
    parser.add_argument("--plain-questions", type=int, default=40)
    parser.add_argument("--write-card", default="", help="model card (README.md) to put the tables into")
    return parser.parse_args()


def trained_range(model_dir: str) -> tuple[int, int]:
    config = json.loads((Path(model_dir) / "lcpo_config.json").read_text())
    return config["n_min"], config["n_max"]


def spread(n_min: int, n_max: int, count: int = 6) -> tuple[int, ...]:
    """``count`` budgets from n_min to n_max, evenly spaced (rounded to whole tokens): the card's old grid."""
    return tuple(round(n_min + (n_max - n_min) * i / (count - 1)) for i in range(count))


def off_grid_budgets(n_min: int, n_max: int, seed: int, count: int = 6) -> tuple[int, ...]:
    """One budget drawn in each of ``count`` equal parts of [n_min, n_max] (the ends included in
    the first and last parts), never on the evenly spread grid nor a UI-suggested budget."""
    rng = random.Random(f"budgets-{seed}")
    avoid = set(spread(n_min, n_max, count)) | set(TINY_BUDGETS)
    edges = [n_min + (n_max - n_min) * i / count for i in range(count + 1)]
    budgets = []
    for low, high in zip(edges, edges[1:]):
        choices = [b for b in range(math.ceil(low), math.floor(high) + 1) if b not in avoid and b not in budgets]
        budgets.append(rng.choice(choices))
    return tuple(budgets)


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


def run_seed(app, l1: str, base: str, budgets: tuple[int, ...], seed: int, args) -> tuple[list[dict], float]:
    """One seed's sweeps: the summary groups, and the share of the L1 model's thinking tokens that are ticks."""
    common = dict(dataset="arith", samples=args.samples, limit=args.questions, seed=seed, concurrency=256)
    requests = [SweepRequest(models=(l1,), controllers=("l1_exact", "l1_max"), budgets=budgets, run=f"quality-l1-{seed}", **common),
                SweepRequest(models=(base,), controllers=("s1",), budgets=budgets[:2], run=f"quality-s1-{seed}", **common)]
    groups = []
    for request in requests:
        groups += sweep_groups(app, request)
    with app.store.reader() as cur:
        rows = queries.get_generations(cur, requests[0].run)
    ticks = sum(len(TICK.findall(r["thinking_text"] or "")) for r in rows)
    return groups, ticks / max(1, sum(r["thinking_tokens"] or 0 for r in rows))


def sweep_groups(app, request: SweepRequest) -> list[dict]:
    outcome = asyncio.run(app.service.sweep(request))
    if outcome.progress.failed:
        raise RuntimeError(f"{outcome.progress.failed} generations failed: {outcome.progress.last_error}")
    return outcome.summary


def plain_groups(app, models: tuple[str, str], args) -> list[dict]:
    """The plain-prompt controllers on both models (``--plain``)."""
    budgets = tuple(int(b) for b in args.plain_budgets.split(","))
    seed = int(args.seeds.split(",")[0])
    groups = []
    for i, model in enumerate(models):  # one sweep each: a sweep over both would pair the plain prompts with one of them
        request = SweepRequest(models=(model,), controllers=PLAIN_CONTROLLERS, budgets=budgets, run=f"quality-plain-{seed}-{i}",
                               dataset="arith", samples=1, limit=args.plain_questions, seed=seed, concurrency=256)
        groups += sweep_groups(app, request)
    return groups


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
        if g.get("error"):  # a card that failed says why, not "0 tokens, wrong"
            lines += ["", f"**N = {g['budget']}: failed**: {g['error']}"]
            continue
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
               "max_mean_tokens": mx["mean_tokens"], "max_over_budget": mx["violation_rate"], "generations": ex["generations"]}
        if b in budgets[:2]:
            row["s1_base_accuracy"] = group(base_name, "s1", b)["pass_at_1"]
        rows.append(row)
    return {"rows": rows, "figures": (figures := _figures(rows, budgets)), "bars": _bars(figures, rows)}


def _figures(rows: list[dict], budgets: tuple[int, ...]) -> dict:
    total = sum(r["generations"] for r in rows)
    exact, maxed = [r["exact_accuracy"] for r in rows], [r["max_accuracy"] for r in rows]
    large = [r["exact_mean_abs_rel_dev"] for r in rows if r["budget"] >= BARS["exact_dev_per_budget_from"]]
    return {
        "exact_mean_abs_rel_dev": sum(r["exact_mean_abs_rel_dev"] * r["generations"] for r in rows) / total,
        "exact_worst_dev_from_150": max(large, default=0.0),
        "max_over_budget": sum(r["max_over_budget"] * r["generations"] for r in rows) / total,
        "max_worst_over_budget": max(r["max_over_budget"] for r in rows),
        "exact_spearman": spearman(list(budgets), exact), "max_spearman": spearman(list(budgets), maxed),
        "exact_accuracy_at_largest": exact[-1], "max_accuracy_at_largest": maxed[-1],
        "gain_vs_s1": [r["exact_accuracy"] - r["s1_base_accuracy"] for r in rows[:2]],
        "exact_largest_over_smallest": exact[-1] - exact[0], "max_largest_over_smallest": maxed[-1] - maxed[0],
        "exact_worst_drop": worst_drop(exact), "max_worst_drop": worst_drop(maxed),
    }


def _bars(f: dict, rows: list[dict]) -> dict:
    return {
        "exact_dev": f["exact_mean_abs_rel_dev"] <= BARS["exact_mean_abs_rel_dev_max"],
        "exact_dev_every_budget_from_150": f["exact_worst_dev_from_150"] <= BARS["exact_dev_per_budget_max"],
        "max_over_every_budget": f["max_worst_over_budget"] <= BARS["max_over_budget_max"],
        "rises_with_budget": max(f["exact_worst_drop"], f["max_worst_drop"]) <= BARS["drop_below_best_smaller_max"],
        "accuracy_at_largest": min(f["exact_accuracy_at_largest"], f["max_accuracy_at_largest"]) >= BARS["accuracy_at_largest_min"],
        "largest_over_smallest": min(f["exact_largest_over_smallest"], f["max_largest_over_smallest"]) >= BARS["largest_over_smallest_min"],
    }


def table(result: dict, questions: int, samples: int, seed: int) -> str:
    f, ok = result["figures"], result["bars"]
    mark = {True: "met", False: "MISSED"}
    lines = [f"Seed {seed}: {questions} fresh arith problems x {samples} samples per budget, temperature 0.6, top_p 0.95, "
             "through the app's sweep (vLLM on CPU).", "",
             "| budget N | Exact accuracy | Exact mean tokens | Exact mean abs(n-N)/N | Max accuracy | Max mean tokens | Max share n > N | s1 on base accuracy |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        s1 = f"{r['s1_base_accuracy']:.1%}" if "s1_base_accuracy" in r else ""
        lines.append(f"| {r['budget']} | {r['exact_accuracy']:.1%} | {r['exact_mean_tokens']:.1f} | {r['exact_mean_abs_rel_dev']:.1%} | "
                     f"{r['max_accuracy']:.1%} | {r['max_mean_tokens']:.1f} | {r['max_over_budget']:.1%} | {s1} |")
    gain = ", ".join(f"{g * 100:+.1f}" for g in f["gain_vs_s1"])
    lines += ["",
              f"- Exact mean abs(n-N)/N over all budgets: {f['exact_mean_abs_rel_dev']:.1%} (bar <= 5%: {mark[ok['exact_dev']]}); "
              f"worst at a budget >= 150: {f['exact_worst_dev_from_150']:.1%} (bar <= 3%: {mark[ok['exact_dev_every_budget_from_150']]})",
              f"- Max share of outputs over budget: {f['max_over_budget']:.1%} overall, worst budget {f['max_worst_over_budget']:.1%} "
              f"(bar <= 3% at every budget: {mark[ok['max_over_every_budget']]})",
              f"- accuracy rises with the budget: worst drop below the best at a smaller budget Exact {f['exact_worst_drop'] * 100:.1f}, "
              f"Max {f['max_worst_drop'] * 100:.1f} points (bar <= 6: {mark[ok['rises_with_budget']]}); Spearman Exact {f['exact_spearman']:.2f}, Max {f['max_spearman']:.2f}",
              f"- accuracy at the largest budget: Exact {f['exact_accuracy_at_largest']:.1%}, Max {f['max_accuracy_at_largest']:.1%} (bar >= 88%: {mark[ok['accuracy_at_largest']]})",
              f"- largest minus smallest budget's accuracy: Exact {f['exact_largest_over_smallest'] * 100:+.1f}, Max {f['max_largest_over_smallest'] * 100:+.1f} points "
              f"(bar >= +40: {mark[ok['largest_over_smallest']]})",
              f"- reported: Exact minus s1-on-base at the two smallest budgets: {gain} points (the issue's +10 is not a bar)",
              f"- countdown ticks: {f.get('tick_share_of_thinking', 0.0):.1%} of the L1 model's thinking tokens"]
    return "\n".join(lines)


def plain_table(groups: list[dict], questions: int) -> str:
    """Accuracy and mean tokens of the plain-prompt controllers on both models."""
    models = sorted({g["model"] for g in groups})
    budgets = sorted({g["budget"] for g in groups})
    lines = [f"Plain-prompt controllers ({questions} fresh arith problems, one sample each): accuracy (mean tokens).", "",
             "| controller | " + " | ".join(f"{m} N={b}" for m in models for b in budgets) + " |",
             "| --- |" + " ---: |" * (len(models) * len(budgets))]
    for controller in PLAIN_CONTROLLERS:
        cells = []
        for m in models:
            for b in budgets:
                g = next((g for g in groups if (g["model"], g["controller"], g["budget"]) == (m, controller, b)), None)
                cells.append(f"{g['pass_at_1']:.1%} ({g['mean_tokens']:.0f})" if g else "-")
        lines.append(f"| {controller} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_card(path: Path, text: str, example: str) -> None:
    card = path.read_text() if path.exists() else ""
    card = replace_card_block(card, text)
    path.write_text(replace_card_block(card, example, EXAMPLE_START, EXAMPLE_END, heading="A Compare example"))


def main() -> None:
    args = parse_args()
    registry = ModelRegistry(REPO_ROOT / "models")
    l1, base = registry.resolve(args.l1_model), registry.resolve(args.base_model)
    seeds = [int(s) for s in args.seeds.split(",")]
    n_range = trained_range(l1.source)
    budgets_of = {seed: tuple(int(b) for b in args.budgets.split(",")) if args.budgets else off_grid_budgets(*n_range, seed) for seed in seeds}
    settings = AppSettings(model=l1.name, engine_max_model_len=2048, engine_kv_cache_gib=1)
    print(f"L1 {l1.name} ({l1.source}), trained range {n_range}; base {base.name}; {args.questions} questions x {args.samples} samples; "
          f"budgets {budgets_of}", flush=True)
    started = time.perf_counter()
    results, texts = {}, []
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        settings = dataclasses.replace(settings, db=str(Path(tmp) / "bench.duckdb"), data_dir=tmp)
        with open_app(settings, env=os.environ, shell=True) as app:  # a command-line tool: any model folder
            for seed in seeds:
                groups, tick_share = run_seed(app, l1.source, base.source, budgets_of[seed], seed, args)
                result = measure(groups, l1.name, base.name, budgets_of[seed])
                result["figures"]["tick_share_of_thinking"] = tick_share
                results[seed] = result
                texts.append(table(result, args.questions, args.samples, seed))
                print(texts[-1], "", sep="\n", flush=True)
            plain = plain_groups(app, (l1.source, base.source), args) if args.plain else []
            compared = asyncio.run(app.service.compare(example_request(l1.source, budgets_of[seeds[0]])))
    met = {name: all(r["bars"][name] for r in results.values()) for name in next(iter(results.values()))["bars"]}
    summary = f"Bars met on every seed: {sum(met.values())} of {len(met)}" + "".join(f"; {k} MISSED" for k, v in met.items() if not v)
    texts.append(summary)
    if plain:
        texts.append(plain_table(plain, args.plain_questions))
    example = example_text(compared, settings.temperature, settings.top_p)
    print(summary, *texts[len(seeds) + 1:], "", example, sep="\n", flush=True)
    if args.write_card:
        write_card(Path(args.write_card), "\n\n".join(texts), example)
    print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cores, {detect_device()}", "l1_model": l1.name,
                      "base_model": base.name, "questions": args.questions, "samples": args.samples, "seeds": seeds,
                      "wall_s": round(time.perf_counter() - started, 1), "bars_met_every_seed": met,
                      "per_seed": {str(seed): {"budgets": budgets_of[seed], **r["figures"], "bars_met": r["bars"], "rows": r["rows"]}
                                   for seed, r in results.items()},
                      "plain": [{k: g[k] for k in ("model", "controller", "budget", "pass_at_1", "mean_tokens")} for g in plain]}))


if __name__ == "__main__":
    main()

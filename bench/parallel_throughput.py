"""Parallel samples batch in the engine: a sweep's output tokens/s with ``maj4:l1_exact`` against ``l1_exact`` at equal tokens.

The same questions through the app's sweep (`open_app`, its own vLLM server, grading and the store
included), two ways that spend the same total budget per answer:

- sequential: ``l1_exact`` at N = B for each B of ``--budgets``, 4 samples per question;
- parallel:   ``maj4:l1_exact`` at N = 4B, i.e. four ``l1_exact`` samples at B each, voted, 1 per question.

So both send the same requests (same prompts, budgets and count) and keep the same number in
flight (``--requests``: the sweep's concurrency, which counts requests: a parallel item's samples
take a slot each); only the grouping into answers differs.
The two alternate for ``--rounds`` rounds (fresh run names, so nothing is resumed) and the median
of each is compared; the bar: parallel output tokens/s at least 0.8x sequential. The last stdout
line is one JSON object::

    python bench/parallel_throughput.py                        # 48 questions x budgets 32,64,128, 3 rounds
    python bench/parallel_throughput.py --questions 16 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from backend.factory import open_app  # noqa: E402
from backend.service.sweep_plan import SweepRequest  # noqa: E402
from backend.serving.engine import detect_device  # noqa: E402
from backend.settings import AppSettings  # noqa: E402

K = 4
BAR = 0.8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="l1-tiny")
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--budgets", default="32,64,128", help="B: the sequential budgets; the parallel method gets 4B")
    parser.add_argument("--requests", type=int, default=128, help="requests in flight, both ways")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def sweep_once(app, args, controller: str, budgets: tuple[int, ...], samples: int, concurrency: int, run: str) -> dict:
    request = SweepRequest(models=(args.model,), dataset="arith", controllers=(controller,), budgets=budgets, samples=samples,
                           limit=args.questions, seed=args.seed, concurrency=concurrency, run=run)
    started = time.perf_counter()
    outcome = asyncio.run(app.service.sweep(request))
    wall = time.perf_counter() - started
    assert outcome.progress.failed == 0, outcome.progress.last_error
    tokens = sum(group["output_tokens"] for group in outcome.summary)
    accuracy = statistics.fmean(group["pass_at_1"] for group in outcome.summary)
    return {"output_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "pass_at_1": accuracy,
            "tokens_per_answer": statistics.fmean(group["mean_tokens"] for group in outcome.summary)}


def main() -> None:
    args = parse_args()
    budgets = tuple(int(b) for b in args.budgets.split(","))
    ways = {"l1_exact": (budgets, K, args.requests), f"maj{K}:l1_exact": (tuple(K * b for b in budgets), 1, args.requests)}
    print(f"{args.questions} arith questions; l1_exact at N = {budgets} ({K} samples each) vs maj{K}:l1_exact at N = {ways[f'maj{K}:l1_exact'][0]} "
          f"({K} samples at N/{K}, voted); {args.requests} requests in flight; {args.rounds} rounds", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        settings = AppSettings(model=args.model, db=str(Path(tmp) / "bench.duckdb"), data_dir=tmp, engine_max_model_len=2048)
        with open_app(settings, env=os.environ, shell=True) as app:
            spec = app.service.resolve_model(args.model)
            app.service.engines.ensure(spec, timeout_s=600)
            sweep_once(app, args, "l1_exact", budgets[:1], 1, args.requests, "warm-up")  # first requests pay one-off costs
            for round_index in range(args.rounds):
                order = list(ways) if round_index % 2 == 0 else list(reversed(ways))  # alternate, so drift hits both alike
                for name in order:
                    way_budgets, samples, concurrency = ways[name]
                    result = sweep_once(app, args, name, way_budgets, samples, concurrency, f"{name}-{round_index}")
                    results[name].append(result)
                    print(f"round {round_index + 1} {name:>14}: {result['tokens_per_s']:7.1f} tok/s ({result['output_tokens']} tokens in "
                          f"{result['wall_s']:.1f} s; {result['tokens_per_answer']:.0f} tokens per answer, pass@1 {result['pass_at_1']:.3f})", flush=True)
    medians = {name: statistics.median(r["tokens_per_s"] for r in runs) for name, runs in results.items()}
    ratio = medians[f"maj{K}:l1_exact"] / medians["l1_exact"]
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {detect_device()}",
        "model": args.model, "questions": args.questions, "rounds": args.rounds, "requests_in_flight": args.requests,
        "sequential_tokens_per_s": round(medians["l1_exact"], 1), "parallel_tokens_per_s": round(medians[f"maj{K}:l1_exact"], 1),
        "ratio": round(ratio, 3), "bar": BAR, "met": ratio >= BAR,
        "sequential_tokens_per_answer": round(statistics.fmean(r["tokens_per_answer"] for r in results["l1_exact"]), 1),
        "parallel_tokens_per_answer": round(statistics.fmean(r["tokens_per_answer"] for r in results[f"maj{K}:l1_exact"]), 1),
    }
    print(f"parallel / sequential output tokens/s: {ratio:.3f} (bar >= {BAR}: {'met' if ratio >= BAR else 'MISSED'})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

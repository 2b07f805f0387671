"""Sequential against parallel test-time compute at equal tokens, on the embedded model: the README's table.

The Sweep tab's preset as a script: arith questions through the app's sweep (its own vLLM server,
grading, the store), on the L1 model and on the base model it was trained from (the methods that
use the plain prompt are the base model's baselines in the L1 and s1 papers), every method given
the same total budget N per answer: one long thought
(``l1_exact``), four votes over shorter ones (``maj4:l1_exact``), four votes without thinking
(``maj4:no_thinking``), budget forcing (``s1``), early exit and the engine's thinking cap, each on
the model it is meant for (the L1 prompts on the L1 model, the plain-prompt methods on the base:
`backend.service.pairing`; ``--every-pair`` runs every method on both). Prints
a Markdown table (accuracy and tokens generated per answer, probe tokens included) and, on the
last line, one JSON object with every row::

    python bench/equal_tokens.py                              # 100 questions x 2 samples, N = 128, 256, 512, both tiny models
    python bench/equal_tokens.py --questions 20 --samples 1   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from backend.factory import open_app  # noqa: E402
from backend.service.analytics import filters_from_form  # noqa: E402
from backend.service.sweep_plan import SweepRequest  # noqa: E402
from backend.settings import AppSettings  # noqa: E402

METHODS = ("l1_exact", "maj4:l1_exact", "best4:l1_exact", "maj4:no_thinking", "s1", "early_exit", "thinking_cap")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="l1-tiny,tiny-r1-base", help="the L1 model, and the base it was trained from (s1's paper setting)")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--budgets", default="128,256,512")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=777, help="fresh problems: not the seeds the tiny models were trained on")
    parser.add_argument("--every-pair", action="store_true", help="every method on every model (default: each on the model it is meant for)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    models = tuple(args.models.split(","))
    request = SweepRequest(models=models, dataset="arith", controllers=tuple(args.methods.split(",")),
                           budgets=tuple(int(b) for b in args.budgets.split(",")), samples=args.samples, limit=args.questions,
                           seed=args.seed, run="equal-tokens", each_on_its_model=not args.every_pair)
    with tempfile.TemporaryDirectory(prefix="bench-equal-") as tmp:
        settings = AppSettings(model=models[0], db=str(Path(tmp) / "bench.duckdb"), data_dir=tmp, engine_max_model_len=2048)
        with open_app(settings, env=os.environ, shell=True) as app:
            started = time.perf_counter()
            outcome = asyncio.run(app.service.sweep(request))
            wall = time.perf_counter() - started
            view = app.service.analytics.view(filters_from_form([], [], [], ["equal-tokens"], 0, 0), {}, 0.5)
    assert outcome.progress.failed == 0, outcome.progress.last_error
    kinds = {(p["model"], p["controller"], p["budget"]): p for p in view.points}
    print(f"{args.questions} arith problems (seed {args.seed}) x {args.samples} samples, temperature 0.6, top_p 0.95, "
          f"{', '.join(models)} on vLLM (CPU), through the app's sweep ({wall / 60:.1f} min).\n")
    print("| model | method | budget | N | accuracy (pass@1) | tokens per answer | of which probes | share of answers over N |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    order = lambda g: (models.index(g["model"]), METHODS.index(g["controller"]) if g["controller"] in METHODS else 99, g["budget"])  # noqa: E731
    for group in sorted(outcome.summary, key=order):
        point = kinds.get((group["model"], group["controller"], group["budget"]), {})
        row = {"model": group["model"], "method": group["controller"], "budget_kind": point.get("budget_kind"), "budget": group["budget"], "pass_at_1": group["pass_at_1"],
               "tokens_per_answer": group["mean_tokens"] + group["mean_probe_tokens"], "probe_tokens": group["mean_probe_tokens"],
               "over_budget": group["violation_rate"]}
        rows.append(row)
        print(f"| {row['model']} | `{row['method']}` | {row['budget_kind']} | {row['budget']} | {row['pass_at_1']:.1%} | {row['tokens_per_answer']:.0f} | "
              f"{row['probe_tokens']:.0f} | {row['over_budget']:.0%} |")
    print(f"\n{view.recommendation}")
    print(json.dumps({"models": models, "questions": args.questions, "samples": args.samples, "wall_s": round(wall, 1), "rows": rows}))


if __name__ == "__main__":
    main()

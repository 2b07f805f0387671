"""A beam search's policy tokens/s against as many independent samples, and what its verifier reads.

The same arith questions through the app's sweep (`open_app`: its own vLLM servers, grading and the
store included), two ways that generate the same number of paths of the same length per question:

- search:      ``beam4x4:l1_exact@oracle`` at N = 16 B: 16 paths of at most B tokens, grown a line at a
  time, scored, pruned; its requests share their prefixes (vLLM's prefix cache);
- independent: ``l1_exact`` at N = B, 16 samples per question: one request per path.

Both keep about ``--requests`` requests in flight (a beam item sends its 16 expansions at once, so
its sweep runs ``--requests / 16`` items at a time). The oracle verifier reads nothing, so the first
pair measures the policy alone; a third run, ``beam4x4:l1_exact@tiny-prm``, measures the verifier
tokens the learned PRM reads per policy token (it rescoring every path from its start each step:
pooling requests get no prefix cache). The engine's block size is a flag (vLLM's CPU default is 128;
smaller blocks let more of a shared prefix hit the cache), and the prefix-cache hit rate of each run
is read from the engine's /metrics. The last stdout line is one JSON object::

    python bench/search_throughput.py                          # 32 questions, B = 128, block size 32
    python bench/search_throughput.py --block-size 128 --questions 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from backend.factory import open_app  # noqa: E402
from backend.service.sweep_plan import SweepRequest  # noqa: E402
from backend.serving.engine import detect_device  # noqa: E402
from backend.settings import AppSettings  # noqa: E402

PATHS = 16  # beam4x4
METRIC = re.compile(r"^(vllm:prefix_cache_(?:hits|queries))_total\{[^}]*\}\s+([0-9.e+]+)$", re.M)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="l1-tiny")
    parser.add_argument("--prm", default="tiny-prm")
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--path-budget", type=int, default=128, help="B: each path's tokens (the search gets N = 16 B)")
    parser.add_argument("--requests", type=int, default=64, help="requests in flight, both ways")
    parser.add_argument("--block-size", type=int, default=32, help="the engine's KV block size (vLLM's --block-size)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def cache_counters(endpoint) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    text = httpx.get(f"{endpoint.base_url}/metrics", headers=headers, timeout=10).text
    return {name: float(value) for name, value in METRIC.findall(text)}


def sweep_once(app, args, endpoint, controller: str, budget: int, samples: int, concurrency: int, run: str) -> dict:
    request = SweepRequest(models=(args.model,), dataset="arith", controllers=(controller,), budgets=(budget,), samples=samples,
                           limit=args.questions, seed=args.seed, concurrency=concurrency, run=run)
    before = cache_counters(endpoint)
    started = time.perf_counter()
    outcome = asyncio.run(app.service.sweep(request))
    wall = time.perf_counter() - started
    after = cache_counters(endpoint)
    assert outcome.progress.failed == 0, outcome.progress.last_error
    (group,) = outcome.summary
    tokens = group["output_tokens"]
    queries = after.get("vllm:prefix_cache_queries", 0) - before.get("vllm:prefix_cache_queries", 0)
    hits = after.get("vllm:prefix_cache_hits", 0) - before.get("vllm:prefix_cache_hits", 0)
    verifier = (group.get("mean_verifier_tokens") or 0) * group["questions"] * group["samples"]
    return {"controller": group["controller"], "policy_tokens": tokens, "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "pass_at_1": round(group["pass_at_1"], 3), "prefix_cache_hit_rate": round(hits / queries, 3) if queries else None,
            "verifier_tokens": round(verifier), "verifier_per_policy_token": round(verifier / tokens, 2) if tokens else None}


def main() -> None:
    args = parse_args()
    budget = args.path_budget
    print(f"{args.questions} arith questions; beam4x4 at N = {PATHS * budget} vs l1_exact at N = {budget} x {PATHS} samples; "
          f"{args.requests} requests in flight; block size {args.block_size}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        settings = AppSettings(model=args.model, db=str(Path(tmp) / "bench.duckdb"), data_dir=tmp, engine_max_model_len=2048,
                               engine_extra_args=f"--block-size {args.block_size}")
        with open_app(settings, env=os.environ, shell=True) as app:
            spec = app.service.resolve_model(args.model)
            endpoint = app.service.engines.ensure(spec, timeout_s=600)
            sweep_once(app, args, endpoint, "l1_exact", budget, 1, args.requests, "warm-up")  # first requests pay one-off costs
            runs = [
                sweep_once(app, args, endpoint, "l1_exact", budget, PATHS, args.requests, "independent"),
                sweep_once(app, args, endpoint, "beam4x4:l1_exact@oracle", PATHS * budget, 1, max(1, args.requests // PATHS), "search-oracle"),
                sweep_once(app, args, endpoint, f"beam4x4:l1_exact@{args.prm}", PATHS * budget, 1, max(1, args.requests // PATHS), "search-prm"),
            ]
    for run in runs:
        print(f"{run['controller']:>28}: {run['tokens_per_s']:7.1f} policy tok/s ({run['policy_tokens']} in {run['wall_s']} s), "
              f"prefix-cache hits {run['prefix_cache_hit_rate']}, verifier tokens per policy token {run['verifier_per_policy_token']}, "
              f"pass@1 {run['pass_at_1']}", flush=True)
    independent, oracle, prm = runs
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {detect_device()}", "model": args.model, "prm": args.prm,
        "questions": args.questions, "path_budget": budget, "paths": PATHS, "requests_in_flight": args.requests, "block_size": args.block_size,
        "independent_tokens_per_s": independent["tokens_per_s"], "beam_tokens_per_s": oracle["tokens_per_s"],
        "beam_over_independent": round(oracle["tokens_per_s"] / independent["tokens_per_s"], 3),
        "beam_prm_tokens_per_s": prm["tokens_per_s"], "prefix_cache_hit_rate_independent": independent["prefix_cache_hit_rate"],
        "prefix_cache_hit_rate_beam": oracle["prefix_cache_hit_rate"], "verifier_tokens_per_policy_token": prm["verifier_per_policy_token"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

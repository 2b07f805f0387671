"""Replicas behind vllm-router against one engine, on the same sweep: spread, losses, throughput.

One workload (``--questions`` arith questions x ``--budgets``, controller ``l1_exact``, one
sample) is swept through the app twice, in this one run, one after the other: (a) on
``--replicas`` replicas of the model behind vllm-router (``engines_replicas``), with replica 0
killed with -9 once ``--kill-at`` generations are stored (0: no kill), and (b) on one engine.
For (a) it prints the requests each replica finished (vLLM's own counter), the rows stored and
the duplicates among them; for both the output tokens per second. The last stdout line is one
JSON object.

On this 2-core machine the replicas share the same two cores, so no speed-up is expected: the
figure to read is that nothing is lost or stored twice. On a machine with K GPUs each replica
gets its own GPU (``CUDA_VISIBLE_DEVICES``), which is where the throughput scales::

    python bench/replicas.py                                   # 64 questions x 64,128,256, kill at 60
    python bench/replicas.py --questions 16 --kill-at 0        # a quick look
    python app.py serve --engines-replicas l1-tiny=8           # what a user with 8 GPUs runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from backend.factory import open_app  # noqa: E402
from backend.service.sweep_plan import parse_sweep_request  # noqa: E402
from backend.serving.engine import detect_device  # noqa: E402
from backend.settings import AppSettings  # noqa: E402
from store import queries  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="l1-tiny")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--budgets", default="64,128,256")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--policy", default="round_robin", help="vllm-router's policy")
    parser.add_argument("--kill-at", type=int, default=60, help="kill replica 0 with -9 once this many generations are done (0: never)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="also run (c): one vLLM server with --data-parallel-size K, vLLM's own alternative to a router")
    return parser.parse_args()


def run_once(args, replicas: int, workdir: Path, kill_at: int, data_parallel: int = 1) -> dict:
    settings = AppSettings(model=args.model, db=str(workdir / "bench.duckdb"), data_dir=str(workdir), engine_max_model_len=2048,
                           engines_replicas=f"{args.model}={replicas}" if replicas > 1 else "", engines_router_policy=args.policy,
                           engine_extra_args=f"--data-parallel-size {data_parallel}" if data_parallel > 1 else "",
                           engine_start_timeout_s=900)
    with open_app(settings, env=os.environ, shell=True) as app:
        spec = app.service.resolve_model(args.model)
        app.service.engines.ensure(spec, timeout_s=600)
        engine = app.service.engines.engine_of(spec.name)
        counts_before = engine.request_counts() if replicas > 1 else []
        killed = []

        def on_progress(progress) -> None:
            if replicas > 1 and kill_at and not killed and progress.done >= kill_at:
                killed.append(progress.done)
                os.killpg(engine.replicas[0].pid(), signal.SIGKILL)

        request = parse_sweep_request(args.model, "arith", "l1_exact", args.budgets, samples=1, limit=args.questions, seed=4242,
                                      concurrency=args.concurrency, run=f"replicas-{replicas}")
        started = time.perf_counter()
        outcome = asyncio.run(app.service.sweep(request, on_progress))
        wall = time.perf_counter() - started
        with app.store.reader() as cur:
            rows = queries.get_generations(cur, outcome.run_id)
        result = {"replicas": replicas, "generations": outcome.progress.total, "stored": len(rows),
                  "duplicates": len(rows) - len({r["gen_id"] for r in rows}), "failed": outcome.progress.failed,
                  "output_tokens": sum(r["total_tokens"] for r in rows), "wall_s": round(wall, 1)}
        result["tokens_per_s"] = round(result["output_tokens"] / wall, 1)
        if replicas > 1:
            # The killed replica's counter restarts from 0 with it: what it served before the kill is not in it.
            result["requests_per_replica"] = [after - (before if not (killed and i == 0) else 0)
                                              for i, (after, before) in enumerate(zip(engine.request_counts(), counts_before))]
            result["killed_at"] = killed[0] if killed else None
            result["restarts"] = [r.status().restarts for r in engine.replicas]
        return result


def main() -> None:
    args = parse_args()
    print(f"{args.questions} arith questions x budgets {args.budgets}, l1_exact, one sample, {args.concurrency} in flight; "
          f"device {detect_device()}, {os.cpu_count()} CPUs", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        for replicas in (args.replicas, 1):
            workdir = Path(tmp) / f"r{replicas}"
            workdir.mkdir()
            results[replicas] = run_once(args, replicas, workdir, args.kill_at)
            r = results[replicas]
            print(f"{replicas} engine(s): {r['stored']}/{r['generations']} stored, {r['duplicates']} duplicates, {r['failed']} failed, "
                  f"{r['tokens_per_s']} tok/s ({r['output_tokens']} tokens in {r['wall_s']} s)"
                  + (f"; requests per replica {r['requests_per_replica']}, replica 0 killed at {r['killed_at']}, restarts {r['restarts']}"
                     if replicas > 1 else ""), flush=True)
        if args.data_parallel:
            workdir = Path(tmp) / "dp"
            workdir.mkdir()
            try:
                results["dp"] = run_once(args, 1, workdir, 0, data_parallel=args.replicas)
                r = results["dp"]
                print(f"--data-parallel-size {args.replicas}: {r['stored']}/{r['generations']} stored, {r['tokens_per_s']} tok/s", flush=True)
            except Exception as exc:  # what vLLM's data-parallel mode does on this machine is the finding
                results["dp"] = {"error": f"{type(exc).__name__}: {str(exc)[-600:]}"}
                print(f"--data-parallel-size {args.replicas}: failed: {results['dp']['error']}", flush=True)
    many, one = results[args.replicas], results[1]
    print(json.dumps({"replicas": many, "one_engine": one, "data_parallel": results.get("dp"),
                      "throughput_ratio": round(many["tokens_per_s"] / one["tokens_per_s"], 2)}))


if __name__ == "__main__":
    main()

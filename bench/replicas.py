"""Replicas behind vllm-router against one engine, on the same sweep: spread, losses, throughput.

One workload (``--questions`` arith questions x ``--budgets``, controller ``l1_exact``, one
sample) is swept through the app on (a) ``--replicas`` replicas of the model behind vllm-router
(``engines_replicas``), (b) one engine, and with ``--data-parallel`` (c) one vLLM server with
``--data-parallel-size K`` (vLLM's own alternative to a router), one after the other in this one
run. Each runs it twice in the same app, after a short warm-up sweep: clean (output tokens per second; for (a) the requests
each replica finished, vLLM's own counter), then with a kill -9 once ``--kill-at`` generations
are done (replica 0's process group; for (c) its second engine core): rows stored, duplicates,
failures. The last stdout line is one JSON object.

On this 2-core machine the replicas share the same two cores, so no speed-up is expected: the
figure to read is that nothing is lost or stored twice. On a machine with K GPUs each replica
gets its own GPU (``CUDA_VISIBLE_DEVICES``), which is where the throughput scales::

    python bench/replicas.py --data-parallel                   # 128 questions x 64,128,256; kill at 60
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
    parser.add_argument("--questions", type=int, default=128)
    parser.add_argument("--budgets", default="64,128,256")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--policy", default="round_robin", help="vllm-router's policy")
    parser.add_argument("--kill-at", type=int, default=60, help="kill replica 0 with -9 once this many generations are done (0: never)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="also run (c): one vLLM server with --data-parallel-size K, vLLM's own alternative to a router")
    return parser.parse_args()


def run_once(args, replicas: int, workdir: Path, data_parallel: int = 1) -> dict:
    """Two sweeps of the workload in one app: a clean one (throughput, spread) and one with a kill
    at ``--kill-at`` (replica 0's process group; with data parallelism, its second engine core)."""
    settings = AppSettings(model=args.model, db=str(workdir / "bench.duckdb"), data_dir=str(workdir), engine_max_model_len=2048,
                           engines_replicas=f"{args.model}={replicas}" if replicas > 1 else "", engines_router_policy=args.policy,
                           engine_extra_args=f"--data-parallel-size {data_parallel}" if data_parallel > 1 else "",
                           engine_start_timeout_s=900)
    with open_app(settings, env=os.environ, shell=True) as app:
        spec = app.service.resolve_model(args.model)
        app.service.engines.ensure(spec, timeout_s=600)
        engine = app.service.engines.engine_of(spec.name)
        # The first requests on fresh servers pay one-off costs (a replica set has several to warm up).
        sweep_once(app, argparse.Namespace(**{**vars(args), "questions": 16}), engine, "warm-up", kill=None)
        result = sweep_once(app, args, engine, "clean", kill=None)
        if args.kill_at and (replicas > 1 or data_parallel > 1):
            victim = (lambda: engine.replicas[0].pid()) if replicas > 1 else (lambda: _dp_rank_pid(engine.pid(), 1))
            killed = sweep_once(app, args, engine, "killed", kill=victim)
            result["with_a_kill"] = {k: killed[k] for k in ("generations", "stored", "duplicates", "failed", "killed_at", "aborted", "wall_s")}
        return result


def sweep_once(app, args, engine, run: str, kill) -> dict:
    replicated = hasattr(engine, "request_counts")
    before = engine.request_counts() if replicated else []
    at_kill: list[int] = []
    killed: list[int] = []

    def on_progress(progress) -> None:
        if kill is not None and not killed and progress.done >= args.kill_at:
            killed.append(progress.done)
            at_kill.extend(engine.request_counts() if replicated else [])
            if replicated:
                os.killpg(kill(), signal.SIGKILL)  # the replica's server and its workers
            else:
                os.kill(kill(), signal.SIGKILL)  # one data-parallel engine core

    request = parse_sweep_request(args.model, "arith", "l1_exact", args.budgets, samples=1, limit=args.questions, seed=4242,
                                  concurrency=args.concurrency, run=run)
    started = time.perf_counter()
    outcome = asyncio.run(app.service.sweep(request, on_progress))
    wall = time.perf_counter() - started
    with app.store.reader() as cur:
        rows = queries.get_generations(cur, outcome.run_id)
    result = {"generations": outcome.progress.total, "stored": len(rows), "duplicates": len(rows) - len({r["gen_id"] for r in rows}),
              "failed": outcome.progress.failed, "aborted": outcome.aborted, "output_tokens": sum(r["total_tokens"] for r in rows),
              "wall_s": round(wall, 1), "killed_at": killed[0] if killed else None}
    result["tokens_per_s"] = round(result["output_tokens"] / wall, 1)
    if replicated:
        after = engine.request_counts()
        # A killed replica's counter restarts from 0 with it: what it served before the kill is added back.
        result["requests_per_replica"] = [a - b + (k if killed and i == 0 else 0)
                                          for i, (a, b, k) in enumerate(zip(after, before, at_kill or [0] * len(after)))]
    return result


def _dp_rank_pid(server_pid: int, rank: int) -> int:
    """The engine core process of data-parallel rank `rank` under a vLLM server."""
    import psutil

    for child in psutil.Process(server_pid).children(recursive=True):
        if f"DP{rank}" in child.name() or any(f"DP{rank}" in part for part in child.cmdline()):
            return child.pid
    raise RuntimeError(f"no engine core of rank {rank} under pid {server_pid}")


def main() -> None:
    args = parse_args()
    print(f"{args.questions} arith questions x budgets {args.budgets}, l1_exact, one sample, {args.concurrency} in flight; "
          f"device {detect_device()}, {os.cpu_count()} CPUs", flush=True)
    results: dict[str, dict] = {}
    runs = {"replicas": (args.replicas, 1), "one_engine": (1, 1)}
    if args.data_parallel:
        runs["data_parallel"] = (1, args.replicas)
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        for name, (replicas, dp) in runs.items():
            workdir = Path(tmp) / name
            workdir.mkdir()
            try:
                results[name] = r = run_once(args, replicas, workdir, dp)
            except Exception as exc:  # data parallelism that does not run here is a finding, not a crash of the bench
                results[name] = {"error": f"{type(exc).__name__}: {str(exc)[-600:]}"}
                print(f"{name}: failed: {results[name]['error']}", flush=True)
                continue
            print(f"{name}: {r['stored']}/{r['generations']} stored, {r['duplicates']} duplicates, {r['failed']} failed, {r['tokens_per_s']} tok/s "
                  f"({r['output_tokens']} tokens in {r['wall_s']} s)" + (f"; requests per replica {r['requests_per_replica']}" if "requests_per_replica" in r else "")
                  + (f"; with a kill at {r['with_a_kill']['killed_at']}: {r['with_a_kill']}" if "with_a_kill" in r else ""), flush=True)
    ratio = results["replicas"]["tokens_per_s"] / results["one_engine"]["tokens_per_s"]
    print(json.dumps({**results, "throughput_ratio": round(ratio, 2)}))


if __name__ == "__main__":
    main()

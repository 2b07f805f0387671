"""Sweep throughput: the app's sweep against vLLM's offline engine and a plain transformers loop.

One workload (``--questions`` arith questions x ``--budgets`` x ``--samples``, controller
``l1_exact``, the paper's sampling: temperature 0.6, top_p 0.95, one seed per sample), run
three ways in this one process run, one after the other so they never share the CPU:

(a) app:          the service's sweep (what ``app.py sweep`` calls), the app built by ``open_app``, through its own
                  vLLM server: HTTP, the controller, grading and the DuckDB store included;
(b) vllm:         ``vllm.LLM.generate`` in-process on the same prompt token ids, max_tokens,
                  seeds and engine settings (max_model_len, eager mode, KV cache size);
(c) transformers: ``model.generate`` per prompt, its samples as one batch, on the first
                  ``--hf-questions`` questions only (it is slow; tokens/s is what is compared).

Engine start and model loading are not timed. Each prints output tokens/s; the last stdout line
is one JSON object with ``ratio_vs_vllm`` (a/b) and ``ratio_vs_transformers`` (a/c)::

    python bench/sweep_throughput.py                       # 64 questions x 4 budgets x 4 samples
    python bench/sweep_throughput.py --questions 16 --hf-questions 2   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from backend.controllers import prompts  # noqa: E402
from backend.controllers.prompted import L1Exact  # noqa: E402
from backend.evaluation.datasets import load_dataset  # noqa: E402
from backend.factory import open_app  # noqa: E402
from backend.processes import tail  # noqa: E402
from backend.service.sweep_plan import SweepRequest, plan_items  # noqa: E402
from backend.serving.client import EngineClient  # noqa: E402
from backend.serving.engine import detect_device  # noqa: E402
from backend.serving.registry import ModelRegistry  # noqa: E402
from backend.settings import REPO_ROOT, AppSettings  # noqa: E402

MAX_MODEL_LEN = 2048
KV_CACHE_GIB = 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-r1-base")
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--budgets", default="32,64,128,256")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=256, help="requests in flight for (a)")
    parser.add_argument("--hf-questions", type=int, default=8, help="questions run through transformers (c)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def workload(args, spec):
    request = SweepRequest(models=(spec.name,), dataset="arith", controllers=("l1_exact",), budgets=tuple(int(b) for b in args.budgets.split(",")),
                           samples=args.samples, limit=args.questions, seed=args.seed, concurrency=args.concurrency, run="bench")
    dataset = load_dataset("arith", seed=args.seed, limit=args.questions)
    return request, dataset, plan_items("bench", spec.name, request, dataset.questions)


def run_app(spec, settings: AppSettings, request, items, workdir: Path) -> tuple[dict, dict[tuple[int, int], list[int]]]:
    """(a): the sweep through the app's backend. Also returns the exact prompt ids it sent, for (b)."""
    settings = dataclasses.replace(settings, db=str(workdir / "bench.duckdb"), data_dir=str(workdir))
    with open_app(settings, env=os.environ, shell=True) as app:  # a command-line tool: any model folder
        app.service.engines.ensure(spec, timeout_s=600)
        engine = app.service.engines.engine_of(spec.name)
        started = time.perf_counter()
        outcome = asyncio.run(app.service.sweep(request))
        wall = time.perf_counter() - started
        restarts = engine.status().restarts
        if restarts:
            print(f"the engine restarted {restarts} times during the sweep; its log:\n{tail(engine.log_path, 60)}", file=sys.stderr)
        prompt_ids = asyncio.run(fetch_prompt_ids(app.service.engines.ensure(spec, 600), items))
    tokens = sum(group["output_tokens"] for group in outcome.summary)
    assert outcome.progress.failed == 0, outcome.progress.last_error
    return {"generations": outcome.progress.done, "output_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "pass_at_1": [g["pass_at_1"] for g in outcome.summary]}, prompt_ids


async def fetch_prompt_ids(endpoint, items) -> dict[tuple[str, int], list[int]]:
    async with EngineClient(endpoint, timeout_s=600) as client:
        ids = {}
        for item in items:
            key = (item.question.qid, item.budget)
            if key not in ids:
                ids[key] = await client.chat_prompt_ids(prompts.chat_messages(prompts.l1_exact_prompt(item.question.question, item.budget)))
        return ids


def max_tokens(settings: AppSettings, budget: int, prompt_len: int) -> int:
    return min(L1Exact(settings.controller_config()).max_tokens(budget), MAX_MODEL_LEN - prompt_len)


def run_vllm(spec, settings: AppSettings, items, prompt_ids) -> dict:
    """(b): vLLM's offline engine on the same prompts, lengths and seeds."""
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(KV_CACHE_GIB)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # as the app's server runs
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    config = settings.engine_config().resolved()  # the app's engine settings, so that only the path differs
    llm = LLM(model=spec.source, max_model_len=config.max_model_len, enforce_eager=config.enforce_eager, dtype=config.dtype,
              enable_chunked_prefill=config.device != "cpu", generation_config="vllm")
    batch = [TokensPrompt(prompt_token_ids=prompt_ids[(i.question.qid, i.budget)]) for i in items]
    params = [SamplingParams(temperature=settings.temperature, top_p=settings.top_p, seed=i.seed,
                             max_tokens=max_tokens(settings, i.budget, len(prompt_ids[(i.question.qid, i.budget)]))) for i in items]
    started = time.perf_counter()
    outputs = llm.generate(batch, params, use_tqdm=False)
    wall = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    del llm
    gc.collect()
    return {"generations": len(outputs), "output_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def run_transformers(spec, settings: AppSettings, items, hf_questions: int, seed: int) -> dict:
    """(c): a plain transformers loop, one generate call per prompt with its samples as a batch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(spec.source)
    model = AutoModelForCausalLM.from_pretrained(spec.source, dtype=torch.float32).eval()
    keep = set(list(dict.fromkeys(i.question.qid for i in items))[:hf_questions])
    # (question, budget) -> how many samples: each prompt is one generate call.
    samples_of = collections.Counter((i.question.question, i.budget) for i in items if i.question.qid in keep)
    tokens = 0
    started = time.perf_counter()
    for (question, budget), samples in samples_of.items():
        text = tokenizer.apply_chat_template(prompts.chat_messages(prompts.l1_exact_prompt(question, budget)), tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.inference_mode():
            out = model.generate(ids.repeat(samples, 1), do_sample=True, temperature=settings.temperature, top_p=settings.top_p,
                                 max_new_tokens=max_tokens(settings, budget, ids.shape[1]), pad_token_id=tokenizer.eos_token_id)
        for row in out[:, ids.shape[1]:].tolist():
            tokens += row.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in row else len(row)
    wall = time.perf_counter() - started
    return {"generations": sum(samples_of.values()), "output_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def main() -> None:
    args = parse_args()
    spec = ModelRegistry(REPO_ROOT / "models").resolve(args.model)
    settings = AppSettings(model=spec.name, engine_max_model_len=MAX_MODEL_LEN, engine_kv_cache_gib=KV_CACHE_GIB)
    request, dataset, items = workload(args, spec)
    print(f"workload: {len(dataset.questions)} questions x {len(request.budgets)} budgets {request.budgets} x {args.samples} samples = {len(items)} generations, l1_exact, {spec.name}", flush=True)
    hf = run_transformers(spec, settings, items, args.hf_questions, args.seed) if args.hf_questions > 0 else {"tokens_per_s": float("nan"), "output_tokens": 0, "generations": 0, "wall_s": 0.0}
    print(f"(c) transformers: {hf['tokens_per_s']:8.1f} tok/s  ({hf['output_tokens']} tokens, {hf['generations']} generations, {hf['wall_s']:.1f} s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        app, prompt_ids = run_app(spec, settings, request, items, Path(tmp))
    print(f"(a) app sweep:    {app['tokens_per_s']:8.1f} tok/s  ({app['output_tokens']} tokens, {app['generations']} generations, {app['wall_s']:.1f} s)", flush=True)
    vl = run_vllm(spec, settings, items, prompt_ids)
    print(f"(b) vLLM offline: {vl['tokens_per_s']:8.1f} tok/s  ({vl['output_tokens']} tokens, {vl['generations']} generations, {vl['wall_s']:.1f} s)", flush=True)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {detect_device()}",
        "model": spec.name,
        "generations": len(items),
        "app_tokens_per_s": round(app["tokens_per_s"], 1),
        "vllm_tokens_per_s": round(vl["tokens_per_s"], 1),
        "transformers_tokens_per_s": round(hf["tokens_per_s"], 1),
        "ratio_vs_vllm": round(app["tokens_per_s"] / vl["tokens_per_s"], 3),
        "ratio_vs_transformers": round(app["tokens_per_s"] / hf["tokens_per_s"], 2),
    }
    print(f"ratio a/b (app / vLLM offline): {result['ratio_vs_vllm']}   ratio a/c (app / transformers): {result['ratio_vs_transformers']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

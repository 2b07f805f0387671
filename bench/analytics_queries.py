"""Analytics benchmark: 1,000,000 synthetic generations through the store's writer, then every view's query.

Builds ``--rows`` synthetic generations shaped like real ones (3 models x 3 controllers x 5
budgets, a few hundred bytes of thinking text each, with the paper's keywords in it and their
counts, as the app stores them; a quarter of each batch as ``maj4:l1_exact`` groups of four
samples, and a tenth as ``early_exit`` generations with probes) before the clock starts; times their ingest through one ``StoreWriter`` (first insert to ``flush()``); then
times each Analytics view's query (store/analytics.py), unfiltered and filtered, ``--repeat``
times each, reporting the median. The last stdout line is one JSON object::

    python bench/analytics_queries.py                 # 1,000,000 rows
    python bench/analytics_queries.py --rows 200000   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from backend.evaluation.keywords import KEYWORD_CATEGORIES, KEYWORDS_VERSION, keyword_counts  # noqa: E402
from bench.store_ingest import synthetic_batch  # noqa: E402
from store import analytics  # noqa: E402
from store.analytics import Filters  # noqa: E402
from store.writer import StoreConfig, StoreWriter  # noqa: E402

MODELS = ("l1-tiny", "tiny-r1-base", "l3lab/L1-Qwen-1.5B-Exact")
CONTROLLERS = ("l1_exact", "l1_max", "s1")
BUDGETS = (64, 128, 256, 512, 1024)
_THOUGHTS = [" ".join(["Let me compute 37 + 48 first.", "Wait, check the carry: 7 + 8 = 15.", "So the sum is 85.",
                        "Alternatively, maybe subtract first.", "Therefore the answer is 85."][: 2 + i % 4]) * (1 + i % 6) for i in range(300)]


_COUNTS = pa.array([keyword_counts(text) for text in _THOUGHTS], type=pa.list_(pa.int32()))  # as the app stores them


def batch(start: int, size: int, rng: np.random.Generator) -> pa.Table:
    table = synthetic_batch(start, size, rng, "time-ordered")
    picks = pa.array(rng.integers(0, len(_THOUGHTS), size))
    texts = pa.array(_THOUGHTS).take(picks)
    budgets = rng.choice(BUDGETS, size).astype(np.int32)
    total = np.maximum(8, (budgets * rng.normal(1.0, 0.3, size))).astype(np.int32)
    columns = {
        "model": pa.array(rng.choice(MODELS, size)), "controller": pa.array(rng.choice(CONTROLLERS, size)), "budget": pa.array(budgets),
        "full_text": texts, "thinking_text": texts, "total_tokens": pa.array(total),
        "keyword_counts": _COUNTS.take(picks), "keywords_version": pa.array([KEYWORDS_VERSION] * size),
        "thinking_tokens": pa.array((total * 0.9).astype(np.int32)), "answer_tokens": pa.array(total - (total * 0.9).astype(np.int32)),
    }
    columns.update(test_time_columns(table.column("gen_id").to_pylist(), columns["controller"].to_pylist(), rng))
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, values) if index >= 0 else table.append_column(name, values)
    return table


def test_time_columns(gen_ids: list[str], controllers: list[str], rng: np.random.Generator) -> dict[str, pa.Array]:
    """The last quarter of the batch as maj4:l1_exact groups (4 consecutive rows, the first one's
    key as group id, answer classes drawn, the first sample chosen); the tenth before it as
    early_exit rows with three probes each."""
    size = len(gen_ids)
    groups_from, probed_from = size - (size // 4) // 4 * 4, size - (size // 4) // 4 * 4 - size // 10
    group_id, group_idx, answer_class, chosen, probes, settled, probe_tokens = ([None] * size for _ in range(7))
    for i in range(groups_from, size):
        j = (i - groups_from) % 4
        controllers[i], group_id[i], group_idx[i], chosen[i] = "maj4:l1_exact", gen_ids[i - j], j, j == 0
        answer_class[i] = int(rng.integers(0, j + 1))
    for i in range(probed_from, groups_from):
        controllers[i], probes[i], settled[i], probe_tokens[i] = "early_exit", '[[32, "85"], [64, "85"], [96, "85"]]', 32, 60
    return {"controller": pa.array(controllers), "group_id": pa.array(group_id, pa.string()), "group_idx": pa.array(group_idx, pa.int32()),
            "answer_class": pa.array(answer_class, pa.int32()), "chosen": pa.array(chosen, pa.bool_()), "probes": pa.array(probes, pa.string()),
            "settled_at": pa.array(settled, pa.int32()), "probe_tokens": pa.array(probe_tokens, pa.int32())}


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    batches = [batch(i, min(args.batch, args.rows - i), rng) for i in range(0, args.rows, args.batch)]
    with tempfile.TemporaryDirectory() as folder, StoreWriter(StoreConfig(Path(folder) / "bench.duckdb")) as store:
        started = time.perf_counter()
        futures = [store.insert_generations(table) for table in batches]
        store.flush()
        ingest_s = time.perf_counter() - started
        assert sum(f.result() for f in futures) == args.rows
        narrow = Filters(models=("l1-tiny",), controllers=("l1_exact", "s1", "maj4:l1_exact", "early_exit"), budget_min=128, budget_max=512)
        views = {
            "filter_options": lambda cur, f: analytics.filter_options(cur),
            "tradeoff": analytics.tradeoff,
            "adherence": analytics.adherence,
            "keywords": lambda cur, f: analytics.keyword_rates(cur, f, KEYWORD_CATEGORIES, KEYWORDS_VERSION),
            "generations": analytics.list_generations,
            "vote_curves": analytics.vote_curves,
            "settling": analytics.settling,
        }
        query_ms = {}
        with store.reader() as cur:
            for name, view in views.items():
                for label, filters in (("all", Filters()), ("filtered", narrow)):
                    query_ms[f"{name}/{label}"] = round(timed(lambda view=view, filters=filters: view(cur, filters), args.repeat), 1)
                    print(f"{name:15s} {label:9s} {query_ms[f'{name}/{label}']:8.1f} ms", flush=True)
    rate = args.rows / ingest_s
    print(f"ingest: {args.rows:,} rows in {ingest_s:.2f} s = {rate:,.0f} rows/s")
    print(json.dumps({"rows": args.rows, "ingest_rows_per_s": round(rate), "ingest_s": round(ingest_s, 2),
                      "max_query_ms": max(query_ms.values()), "query_ms": query_ms}))


if __name__ == "__main__":
    main()

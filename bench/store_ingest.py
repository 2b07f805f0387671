"""Ingest benchmark for the store: synthetic generation rows through ``StoreWriter``.

Builds ``--rows`` synthetic generations as Arrow tables of ``--batch`` rows (before the clock
starts), inserts them through one ``StoreWriter`` into a fresh file in a temporary folder, and
times from the first ``insert_generations`` call to ``flush()`` returning. Then re-inserts one
batch (all keys already stored) to time the idempotent path. The last stdout line is one JSON
object::

    python bench/store_ingest.py                      # 1,000,000 rows, 50,000 per batch
    python bench/store_ingest.py --no-primary-key     # the same table without the gen_id key
    python bench/store_ingest.py --keys time-ordered  # store.ids.new_gen_id keys, not uuid4
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from store import queries
from store.ids import new_gen_id
from store.schema import generations_ddl
from store.writer import StoreConfig, StoreWriter

_QUESTIONS = [f"Question {i}: what is {i} * {i + 7} modulo {i % 13 + 2}?" for i in range(500)]
_THINKING = [("Let me think step by step. " * (5 + i % 40)).strip() for i in range(200)]
_ANSWERS = [f"The answer is \\boxed{{{i}}}." for i in range(100)]


def synthetic_batch(start: int, size: int, rng: np.random.Generator, keys: str) -> pa.Table:
    """``size`` generation rows shaped like real ones (a few hundred bytes of text each)."""
    if keys == "random":
        gen_ids = [uuid.uuid4().hex for _ in range(size)]
    else:  # time-ordered, as the store recommends
        gen_ids = [new_gen_id() for _ in range(size)]
    question_idx = rng.integers(0, len(_QUESTIONS), size)
    thinking_idx = rng.integers(0, len(_THINKING), size)
    answer_idx = rng.integers(0, len(_ANSWERS), size)
    thinking_tokens = rng.integers(10, 4096, size).astype(np.int32)
    answer_tokens = rng.integers(5, 200, size).astype(np.int32)
    base = np.datetime64("2025-01-01T00:00:00", "us")
    return pa.table({
        "gen_id": gen_ids,
        "run_id": pa.array([f"run-{start // 200_000:03d}"] * size),
        "created_at": pa.array(base + np.arange(start, start + size).astype("timedelta64[ms]")),
        "model": pa.array(["Qwen/Qwen3-0.6B"] * size),
        "controller": pa.array(rng.choice(["budget_forcing", "none", "wait_extend"], size)),
        "budget": pa.array(rng.choice([256, 512, 1024, 2048, 4096], size).astype(np.int32)),
        "dataset": pa.array(["gsm8k"] * size),
        "question_id": pa.array([f"q{i}" for i in question_idx]),
        "question": pa.array(_QUESTIONS).take(pa.array(question_idx)),
        "gold": pa.array([str(i) for i in answer_idx]),
        "sample_idx": pa.array(rng.integers(0, 8, size).astype(np.int32)),
        "seed": pa.array(rng.integers(0, 2**31, size)),
        "temperature": pa.array(np.full(size, 0.6)),
        "top_p": pa.array(np.full(size, 0.95)),
        "thinking_text": pa.array(_THINKING).take(pa.array(thinking_idx)),
        "answer_text": pa.array(_ANSWERS).take(pa.array(answer_idx)),
        "extracted_answer": pa.array([str(i) for i in answer_idx]),
        "correct": pa.array(rng.random(size) < 0.5),
        "prompt_tokens": pa.array(rng.integers(20, 200, size).astype(np.int32)),
        "thinking_tokens": pa.array(thinking_tokens),
        "answer_tokens": pa.array(answer_tokens),
        "total_tokens": pa.array(thinking_tokens + answer_tokens),
        "finish_reason": pa.array(["stop"] * size),
        "waits_used": pa.array(rng.integers(0, 3, size).astype(np.int32)),
        "ttft_s": pa.array(rng.random(size)),
        "latency_s": pa.array(rng.random(size) * 30),
    })


def _process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--keys", choices=["random", "time-ordered"], default="random",
                        help="gen_ids from uuid4 (random) or store.ids.new_gen_id (time-ordered)")
    parser.add_argument("--coalesce-rows", type=int, default=StoreConfig.coalesce_rows,
                        help="most rows the writer merges into one transaction")
    parser.add_argument("--no-primary-key", action="store_true",
                        help="create generations without the gen_id key (to measure its cost)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    batches = [synthetic_batch(start, min(args.batch, args.rows - start), rng, args.keys)
               for start in range(0, args.rows, args.batch)]

    with tempfile.TemporaryDirectory(prefix="store_ingest_") as folder:
        path = Path(folder) / "bench.duckdb"
        if args.no_primary_key:
            # Pre-create the table without the key; migrate's CREATE TABLE IF NOT EXISTS keeps it.
            with duckdb.connect(str(path)) as con:
                con.execute(generations_ddl(primary_key=False))
        with StoreWriter(StoreConfig(path, coalesce_rows=args.coalesce_rows)) as store:
            cpu_started = _process_cpu_s()
            started = time.perf_counter()
            futures = [store.insert_generations(batch) for batch in batches]
            store.flush()
            ingest_s = time.perf_counter() - started
            # CPU seconds (all threads): a figure that holds up when other work shares the cores.
            ingest_cpu_s = _process_cpu_s() - cpu_started
            inserted = sum(f.result() for f in futures)

            started = time.perf_counter()
            reinserted = store.insert_generations(batches[len(batches) // 2]).result()
            reinsert_s = time.perf_counter() - started

            with store.reader() as cur:
                stored = queries.count_generations(cur)
                duplicates = queries.duplicate_gen_ids(cur)
        file_mb = path.stat().st_size / 2**20

    print(f"inserted {inserted:,} rows in {ingest_s:.2f} s ({ingest_cpu_s:.2f} CPU s): "
          f"{inserted / ingest_s:,.0f} rows/s "
          f"(re-insert of {batches[len(batches) // 2].num_rows:,} existing rows: {reinsert_s:.2f} s)",
          file=sys.stderr)
    result = {
        "rows": stored,
        "ingest_rows_per_s": round(inserted / ingest_s),
        "ingest_s": round(ingest_s, 3),
        "ingest_cpu_s": round(ingest_cpu_s, 3),
        "rows_per_cpu_s": round(inserted / ingest_cpu_s),
        "batch_rows": args.batch,
        "coalesce_rows": args.coalesce_rows,
        "primary_key": not args.no_primary_key,
        "keys": args.keys,
        "reinsert_rows": batches[len(batches) // 2].num_rows,
        "reinsert_inserted": reinserted,
        "reinsert_s": round(reinsert_s, 3),
        "duplicates": duplicates,
        "file_mb": round(file_mb, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

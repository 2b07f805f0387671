"""Tests of the store package: schema and migrations, the single writer, and the read queries.

Every test works on its own DuckDB file under ``tmp_path``; the whole file runs in seconds.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from store import queries
from store.ids import new_gen_id
from store.schema import (
    GENERATION_ARROW_SCHEMA,
    GENERATION_COLUMNS,
    SCHEMA_VERSION,
    RUNS_DDL,
    SchemaVersionError,
    current_version,
    generations_ddl,
    migrate,
)
from store.writer import StoreClosedError, StoreConfig, StoreWriter

BASE_TIME = dt.datetime(2025, 1, 1, 12, 0, 0)


def make_row(i: int, run_id: str = "run-1", **overrides: Any) -> dict[str, Any]:
    """A generation row with only the required columns (plus overrides)."""
    row: dict[str, Any] = {
        "gen_id": f"{run_id}:{i:06d}",
        "run_id": run_id,
        "created_at": BASE_TIME + dt.timedelta(seconds=i),
        "model": "tiny-model",
        "controller": "budget_forcing",
        "budget": 256,
        "question": f"What is {i} + {i}?",
    }
    row.update(overrides)
    return row


def make_table(start: int, count: int, run_id: str = "run-1") -> pa.Table:
    """``count`` rows as an Arrow table, some columns typed wider than the table's (int64)."""
    return pa.table({
        "gen_id": [f"{run_id}:{i:06d}" for i in range(start, start + count)],
        "run_id": [run_id] * count,
        "created_at": [BASE_TIME + dt.timedelta(seconds=i) for i in range(start, start + count)],
        "model": ["tiny-model"] * count,
        "controller": ["none"] * count,
        "budget": pa.array([512] * count, type=pa.int64()),
        "question": [f"q{i}" for i in range(start, start + count)],
        "thinking_tokens": pa.array(range(start, start + count), type=pa.int64()),
        "correct": [i % 2 == 0 for i in range(start, start + count)],
    })


@pytest.fixture
def store(tmp_path: Path):
    with StoreWriter(StoreConfig(tmp_path / "store" / "budgetlab.duckdb")) as writer:
        yield writer


def count(store: StoreWriter, run_id: str | None = None) -> int:
    with store.reader() as cur:
        return queries.count_generations(cur, run_id)


def block_writer(store: StoreWriter) -> threading.Event:
    """Park the writer thread on an op until the returned event is set, so later ops queue up."""
    gate = threading.Event()
    parked = threading.Event()

    def park(_count: int) -> None:
        parked.set()
        gate.wait(10)

    store._submit_sql("SELECT 1", (), park)
    assert parked.wait(10), "the writer thread never picked up the blocking op"
    return gate


# ------------------------------------------------------------------------------------- schema


def test_migrate_is_idempotent_and_records_version(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "m.duckdb")) as con:
        assert current_version(con) == 0
        assert migrate(con) == SCHEMA_VERSION
        assert migrate(con) == SCHEMA_VERSION
        versions = con.execute("SELECT version, applied_at FROM schema_version").fetchall()
        assert [v for v, _ in versions] == list(range(1, SCHEMA_VERSION + 1))
        assert isinstance(versions[0][1], dt.datetime)
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert {"runs", "generations", "schema_version", "training_jobs", "training_metrics"} <= tables


def test_a_version_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    from store.schema import SCHEMA_VERSION_DDL

    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:  # a file as the first release left it (no keyword columns)
        con.execute(SCHEMA_VERSION_DDL)
        con.execute(RUNS_DDL)
        ddl = generations_ddl()
        con.execute(ddl[: ddl.index(",\n    keyword_counts INTEGER[]")] + "\n)")  # the columns of schema 1
        assert "keyword_counts" not in [r[0] for r in con.execute("DESCRIBE generations").fetchall()]
        con.execute("INSERT INTO schema_version VALUES (1, ?)", [BASE_TIME])
        con.execute("INSERT INTO runs (run_id, name) VALUES ('old', 'kept')")
    with StoreWriter(StoreConfig(path)) as store, store.reader() as cur:
        assert [v for (v,) in cur.execute("SELECT version FROM schema_version ORDER BY version").fetchall()] == list(range(1, SCHEMA_VERSION + 1))
        assert cur.execute("SELECT keyword_counts, keywords_version FROM generations").fetchall() == []
        assert cur.execute("SELECT group_id, answer_class, chosen, probe_tokens, probes, settled_at FROM generations").fetchall() == []
        assert cur.execute("SELECT verifier_tokens, verifier_score, search_tree FROM generations").fetchall() == []
        assert cur.execute("SELECT token_counts FROM generations").fetchall() == []
        assert cur.execute("SELECT name FROM runs").fetchall() == [("kept",)]
        assert cur.execute("SELECT count(*) FROM training_metrics").fetchone() == (0,)


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    with duckdb.connect(str(path)) as con:
        migrate(con)
        con.execute("INSERT INTO schema_version VALUES (?, ?)", [SCHEMA_VERSION + 1, BASE_TIME])
        with pytest.raises(SchemaVersionError, match=rf"version {SCHEMA_VERSION + 1} is newer than this code knows"):
            migrate(con)
    with pytest.raises(SchemaVersionError, match="newer budgetlab"):
        StoreWriter(StoreConfig(path))
    with duckdb.connect(str(path)) as con:  # the refused open did not leave the file locked
        assert current_version(con) == SCHEMA_VERSION + 1


def test_ddl_and_arrow_schema_are_derived_from_the_same_columns(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "s.duckdb")) as con:
        migrate(con)
        described = con.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'generations' ORDER BY ordinal_position"
        ).fetchall()
    assert [(name, kind) for name, kind, _ in described] == [
        (c.name, c.duckdb_type) for c in GENERATION_COLUMNS
    ]
    not_null = {name for name, _, nullable in described if nullable == "NO"}
    assert not_null == {c.name for c in GENERATION_COLUMNS if c.required or c.default is not None}
    assert GENERATION_ARROW_SCHEMA.names == [c.name for c in GENERATION_COLUMNS]


def test_store_config_validation(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="is a directory"):
        StoreConfig(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        StoreConfig(tmp_path / "a_file" / "db.duckdb")
    with pytest.raises(ValueError, match="queue_size"):
        StoreConfig(tmp_path / "db.duckdb", queue_size=0)
    config = StoreConfig(str(tmp_path / "new" / "db.duckdb"))  # type: ignore[arg-type]
    assert isinstance(config.path, Path)


# ------------------------------------------------------------------------------------- inserts


def test_insert_dicts_leaves_missing_optional_columns_null(store: StoreWriter) -> None:
    rows = [make_row(0), make_row(1, dataset="gsm8k", sample_idx=3, correct=True)]
    assert store.insert_generations(rows).result(timeout=10) == 2
    with store.reader() as cur:
        first = queries.get_generation(cur, "run-1:000000")
        second = queries.get_generation(cur, "run-1:000001")
        assert queries.get_generation(cur, "nope") is None
    assert first is not None and second is not None
    assert first["dataset"] is None and first["correct"] is None and first["latency_s"] is None
    assert first["sample_idx"] == 0  # NOT NULL DEFAULT 0
    assert first["created_at"] == BASE_TIME and first["budget"] == 256
    assert (second["dataset"], second["sample_idx"], second["correct"]) == ("gsm8k", 3, True)


def test_insert_arrow_table_casts_types(store: StoreWriter) -> None:
    assert store.insert_generations(make_table(0, 5)).result(timeout=10) == 5
    with store.reader() as cur:
        rows = queries.get_generations(cur, "run-1")
    assert [r["thinking_tokens"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["correct"] for r in rows] == [True, False, True, False, True]
    assert all(r["budget"] == 512 and r["prompt"] is None for r in rows)


def test_unknown_column_is_named_and_nothing_is_written(store: StoreWriter) -> None:
    rows = [make_row(0), make_row(1, bogus_field=1)]
    with pytest.raises(ValueError, match="bogus_field") as raised:
        store.insert_generations(rows)
    assert "row 1" in str(raised.value)
    with pytest.raises(ValueError, match="extra"):
        store.insert_generations(make_table(0, 3).append_column("extra", pa.array([1, 2, 3])))
    store.flush()
    assert count(store) == 0


def test_missing_required_column_raises_and_nothing_is_written(store: StoreWriter) -> None:
    rows = [make_row(0), make_row(1)]
    del rows[1]["question"]
    with pytest.raises(ValueError, match=r"'question' is null in 1 of 2 rows \(first: row 1\)"):
        store.insert_generations(rows)
    with pytest.raises(ValueError, match=r"missing required generation column\(s\) \['model'\]"):
        store.insert_generations(make_table(0, 3).drop_columns(["model"]))
    with pytest.raises(ValueError, match="'budget'"):
        store.insert_generations([make_row(0, budget="lots")])
    store.flush()
    assert count(store) == 0


def test_reinsert_same_gen_ids_is_idempotent(store: StoreWriter) -> None:
    rows = [make_row(i) for i in range(50)]
    assert store.insert_generations(rows).result(timeout=10) == 50
    assert store.insert_generations(rows).result(timeout=10) == 0
    assert store.insert_generations(make_table(40, 20)).result(timeout=10) == 10  # 40..49 exist
    duplicated_in_batch = [make_row(100, budget=1), make_row(100, budget=2)]
    assert store.insert_generations(duplicated_in_batch).result(timeout=10) == 1
    with store.reader() as cur:
        assert queries.count_generations(cur) == 61
        assert queries.duplicate_gen_ids(cur) == 0
        kept = queries.get_generation(cur, "run-1:000100")
    assert kept is not None and kept["budget"] == 1  # the first row of a duplicated key wins


def test_concurrent_producers_get_exact_counts(store: StoreWriter) -> None:
    def produce(thread: int) -> list[int]:
        futures = [
            store.insert_generations(
                [make_row(batch * 10 + i, run_id=f"t{thread}") for i in range(10)]
            )
            for batch in range(100)
        ]
        return [f.result(timeout=30) for f in futures]

    with cf.ThreadPoolExecutor(8) as pool:
        per_thread = list(pool.map(produce, range(8)))
    assert all(counts == [10] * 100 for counts in per_thread)
    with store.reader() as cur:
        assert queries.count_generations(cur) == 8000
        assert queries.count_generations(cur, "t3") == 1000
        assert queries.duplicate_gen_ids(cur) == 0


def test_coalesced_inserts_of_overlapping_keys_count_each_row_once(store: StoreWriter,
                                                                   monkeypatch) -> None:
    merged_sizes: list[int] = []
    real_insert = store._insert_in_transaction

    def spy(tables: list[pa.Table]) -> list[int]:
        merged_sizes.append(len(tables))
        return real_insert(tables)

    monkeypatch.setattr(store, "_insert_in_transaction", spy)
    gate = block_writer(store)
    # Queued together behind the gate, these are merged into one transaction; the first op to
    # carry a key gets the credit for it.
    futures = [store.insert_generations([make_row(i) for i in range(start, start + 20)])
               for start in (0, 10, 0, 30)]
    gate.set()
    assert [f.result(timeout=10) for f in futures] == [20, 10, 0, 20]
    assert merged_sizes == [4]
    assert count(store) == 50


def test_failing_op_does_not_kill_the_writer(store: StoreWriter, monkeypatch) -> None:
    failing = store._submit_sql("SELECT * FROM no_such_table", (), lambda _count: None)
    with pytest.raises(duckdb.CatalogException):
        failing.result(timeout=10)

    # A batch that fails inside the database, merged with good ones: the merged transaction
    # fails, the writer retries one by one, and only the bad batch's Future gets the error.
    real_insert = store._insert_in_transaction

    def insert_failing_on_poison(tables: list[pa.Table]) -> list[int]:
        if any("poison" in t.column("gen_id").to_pylist()[0] for t in tables):
            raise RuntimeError("poisoned batch")
        return real_insert(tables)

    monkeypatch.setattr(store, "_insert_in_transaction", insert_failing_on_poison)
    gate = block_writer(store)
    good_before = store.insert_generations([make_row(i) for i in range(5)])
    poisoned = store.insert_generations([make_row(0, gen_id="poison")])
    good_after = store.insert_generations([make_row(i) for i in range(5, 8)])
    gate.set()
    assert good_before.result(timeout=10) == 5
    with pytest.raises(RuntimeError, match="poisoned batch"):
        poisoned.result(timeout=10)
    assert good_after.result(timeout=10) == 3
    assert store.insert_generations([make_row(8)]).result(timeout=10) == 1
    assert count(store) == 9


def test_cancelled_insert_is_not_written(store: StoreWriter) -> None:
    gate = block_writer(store)
    future = store.insert_generations([make_row(0)])
    assert future.cancel()
    gate.set()
    store.flush(timeout=10)
    assert count(store) == 0


def test_full_queue_applies_backpressure(tmp_path: Path) -> None:
    with StoreWriter(StoreConfig(tmp_path / "q.duckdb", queue_size=2)) as store:
        gate = block_writer(store)
        queued = [store.insert_generations([make_row(i)]) for i in range(2)]  # fills the queue
        with pytest.raises(TimeoutError, match="queue is full"):
            store.flush(timeout=0.2)
        gate.set()
        assert [f.result(timeout=10) for f in queued] == [1, 1]
        store.flush(timeout=10)
        assert count(store) == 2


def test_rows_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "durable.duckdb"
    writer = StoreWriter(StoreConfig(path))
    writer.upsert_run("run-1", "first", "compare", {"budgets": [1, 2]}, "running")
    futures = [writer.insert_generations([make_row(i) for i in range(b * 100, b * 100 + 100)])
               for b in range(10)]
    writer.close()  # drains the queue before closing
    writer.close()  # idempotent
    assert all(f.result(timeout=0) == 100 for f in futures)
    with pytest.raises(StoreClosedError):
        writer.insert_generations([make_row(1000)])
    with pytest.raises(StoreClosedError):
        writer.reader()

    with StoreWriter(StoreConfig(path)) as reopened, reopened.reader() as cur:
        assert queries.count_generations(cur) == 1000
        assert queries.list_runs(cur)[0]["config"] == {"budgets": [1, 2]}


def test_readers_in_other_threads_while_writing(store: StoreWriter) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[list[int]] = []

    def read_until_stopped() -> None:
        counts: list[int] = []
        try:
            with store.reader() as cur:
                while not stop.is_set():
                    counts.append(queries.count_generations(cur))
                    queries.get_generations(cur, "run-1", limit=5)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        seen.append(counts)

    readers = [threading.Thread(target=read_until_stopped) for _ in range(4)]
    for reader in readers:
        reader.start()
    futures = [store.insert_generations(make_table(b * 500, 500)) for b in range(20)]
    assert sum(f.result(timeout=30) for f in futures) == 10_000
    stop.set()
    for reader in readers:
        reader.join(timeout=10)
    assert not errors
    assert all(counts == sorted(counts) for counts in seen)  # committed rows never disappear
    assert count(store) == 10_000


def test_large_arrow_insert_goes_through(store: StoreWriter) -> None:
    n = 100_000
    table = pa.table({
        "gen_id": pa.array([f"g{i:08d}" for i in range(n)]),
        "run_id": pa.array(["big"] * n),
        "created_at": pa.array([BASE_TIME] * n, type=pa.timestamp("us")),
        "model": pa.array(["m"] * n),
        "controller": pa.array(["none"] * n),
        "budget": pa.array([1024] * n, type=pa.int32()),
        "question": pa.array(["why?"] * n),
        "thinking_text": pa.array(["hmm " * 50] * n),
    })
    assert store.insert_generations(table).result(timeout=120) == n
    assert count(store, "big") == n


# ------------------------------------------------------------------------------------- runs, reads


def test_runs_upsert_status_and_listing(store: StoreWriter) -> None:
    store.upsert_run("r-1", "sweep one", "sweep", {"budgets": [256, 512]}, "running").result(10)
    store.upsert_run("r-2", "compare", "compare", None, "running").result(10)
    with store.reader() as cur:
        created = {r["run_id"]: r["created_at"] for r in queries.list_runs(cur)}
    store.upsert_run("r-1", "sweep renamed", "sweep", {"budgets": [1024]}, "queued").result(10)
    store.set_run_status("r-1", "done").result(10)
    with pytest.raises(KeyError, match="no-such-run"):
        store.set_run_status("no-such-run", "done").result(10)
    with store.reader() as cur:
        runs = {r["run_id"]: r for r in queries.list_runs(cur)}
        assert len(queries.list_runs(cur, limit=1)) == 1
    assert runs["r-1"]["name"] == "sweep renamed"
    assert runs["r-1"]["config"] == {"budgets": [1024]}
    assert runs["r-1"]["status"] == "done"
    assert runs["r-1"]["created_at"] == created["r-1"]  # an upsert keeps the creation time
    assert runs["r-2"]["config"] is None
    with pytest.raises(ValueError, match="JSON-serializable"):
        store.upsert_run("r-3", "bad", "sweep", {"path": object()}, "running")


def test_queries_are_parameterized_and_ordered(store: StoreWriter) -> None:
    tricky = "run'; DROP TABLE generations; --"
    rows = [make_row(i, run_id=tricky) for i in (2, 0, 1)]
    store.insert_generations(rows).result(timeout=10)
    store.flush(timeout=10)
    with store.reader() as cur:
        got = queries.get_generations(cur, tricky)
        assert [r["created_at"] for r in got] == sorted(r["created_at"] for r in got)
        assert len(queries.get_generations(cur, tricky, limit=2)) == 2
        assert queries.count_generations(cur, tricky) == 3
        assert queries.count_generations(cur, "other") == 0
        with pytest.raises(ValueError, match="limit"):
            queries.get_generations(cur, tricky, limit=-1)


def test_new_gen_id_is_time_ordered_and_unique() -> None:
    first = new_gen_id()
    time.sleep(0.002)
    later = [new_gen_id() for _ in range(1000)]
    assert len(first) == 32 and int(first, 16) >= 0
    assert all(first < key for key in later)  # the millisecond prefix orders keys across time
    assert len(set(later)) == 1000

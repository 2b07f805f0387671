"""The store's single writer: one DuckDB connection, owned by one thread, fed through a queue.

DuckDB lets only one process open a database file read-write, so the app has exactly one
``StoreWriter``. Any thread may call it; the calls are queued and executed in order by the writer
thread, and each returns a ``concurrent.futures.Future``. Reads go through ``reader()``, which
hands out a fresh cursor (its own connection to the same database) per caller::

    with StoreWriter(StoreConfig(Path("data/budgetlab.duckdb"))) as store:
        store.upsert_run("r1", "budget sweep", "sweep", {"budgets": [256, 1024]}, "running")
        inserted = store.insert_generations(rows).result()   # rows: list of dicts or Arrow table
        store.set_run_status("r1", "done")
        store.flush()
        with store.reader() as cur:
            n = queries.count_generations(cur, "r1")

Generations are idempotent on ``gen_id``: re-inserting an existing key inserts nothing, and the
Future's count says how many rows were actually new. Make keys with ``store.ids.new_gen_id()``
(time-ordered, so much cheaper to index than ``uuid4``), once per generation, reused on retries.
Inserts go in as Arrow tables, one transaction per batch; inserts waiting in the queue together
are merged into one transaction (falling back to one transaction each if the merged one fails).
Future done-callbacks run on the writer thread: keep them short and never wait on the store from
inside one.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from store.rows import GenerationRows, generations_table
from store.schema import GENERATION_COLUMN_NAMES, migrate, utc_now


class StoreClosedError(RuntimeError):
    """The StoreWriter was closed; it accepts no more operations."""


@dataclass(frozen=True)
class StoreConfig:
    """Where the store lives and how the writer queue behaves.

    ``queue_size`` bounds the number of queued operations (not rows): producers block when the
    writer falls that far behind. ``coalesce_rows`` caps how many rows of queued inserts the
    writer merges into one transaction.
    """

    path: Path
    queue_size: int = 10_000
    coalesce_rows: int = 200_000

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            if not isinstance(self.path, (str, os.PathLike)):
                raise TypeError(f"StoreConfig.path must be a path, got {type(self.path).__name__}")
            object.__setattr__(self, "path", Path(self.path))  # frozen: normalize once, here
        if str(self.path) == ":memory:":
            raise ValueError("StoreConfig.path must be a file; in-memory stores are not supported")
        if self.path.is_dir():
            raise ValueError(f"store path {self.path} is a directory; give the database file's path")
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise ValueError(f"store file {self.path} exists but is not readable and writable")
        # The writer creates missing parent folders, so the nearest existing one must be writable.
        existing = self.path.absolute().parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ValueError(f"cannot create the folder for {self.path}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"cannot write the store under {existing}: permission denied")
        for name in ("queue_size", "coalesce_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"StoreConfig.{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class _InsertOp:
    table: pa.Table  # already validated, in GENERATION_ARROW_SCHEMA layout
    future: cf.Future[int]


@dataclass(frozen=True)
class _SqlOp:
    sql: str
    params: tuple[Any, ...]
    future: cf.Future[Any]
    # Turns the statement's affected-row count into the Future's result (may raise).
    interpret: Callable[[int], Any]


@dataclass(frozen=True)
class _TableOp:
    sql: str  # reads the Arrow table as the view TABLE_VIEW
    table: pa.Table
    future: cf.Future[None]


@dataclass(frozen=True)
class _BarrierOp:
    future: cf.Future[None]


class _StopOp:
    pass


_Op = _InsertOp | _SqlOp | _TableOp | _BarrierOp | _StopOp

# How often a producer re-checks a full queue. Only paid under backpressure, when the writer is
# the bottleneck anyway.
_FULL_QUEUE_POLL_S = 0.002
# DuckDB scans an Arrow table chunk by chunk, and tiny chunks are slow: 2,000 merged 100-row
# batches inserted 3x faster once copied into one chunk. Big chunks are left alone (no copy).
_MIN_ROWS_PER_CHUNK = 8_192
_BATCH_VIEW = "_budgetlab_insert_batch"
# The view name a `write_table` statement reads its Arrow table from.
TABLE_VIEW = "_budgetlab_table"
_KEYS_VIEW = "_budgetlab_insert_keys"
_COLUMN_LIST = ", ".join(GENERATION_COLUMN_NAMES)
_INSERT_SQL = (f"INSERT INTO generations ({_COLUMN_LIST}) "
               f"SELECT {_COLUMN_LIST} FROM {_BATCH_VIEW}")
# Positions of the rows to insert: the first row of each gen_id that is not stored yet. Done here
# rather than with INSERT OR IGNORE because DuckDB runs that as a MERGE that groups every payload
# column; this groups only (gen_id, pos), then inserts plainly. The BETWEEN bounds (the batch's
# smallest and largest gen_id) let DuckDB skip stored row groups by their min/max: with
# time-ordered gen_ids that skips nearly the whole table, with random ones it costs nothing.
_FRESH_POSITIONS_SQL = f"""
    SELECT min(k.pos) AS pos
    FROM {_KEYS_VIEW} AS k
    ANTI JOIN (SELECT gen_id FROM generations WHERE gen_id BETWEEN ? AND ?) AS g
        ON g.gen_id = k.gen_id
    GROUP BY k.gen_id
    ORDER BY pos
"""
_UPSERT_RUN_SQL = """
    INSERT INTO runs (run_id, name, kind, created_at, config, status) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (run_id) DO UPDATE SET
        name = excluded.name, kind = excluded.kind, config = excluded.config, status = excluded.status
"""
_SET_RUN_STATUS_SQL = "UPDATE runs SET status = ? WHERE run_id = ?"


class StoreWriter:
    """Owns the store's only read-write connection; see the module docstring."""

    def __init__(self, config: StoreConfig | str | os.PathLike[str]) -> None:
        self.config = config if isinstance(config, StoreConfig) else StoreConfig(Path(config))
        self.config.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.config.path))
        try:
            migrate(self._con)
            # Readers' cursors are spawned from this connection, never from the writer's own, so
            # no other thread ever touches the connection the writer thread is executing on.
            self._cursor_source = self._con.cursor()
        except BaseException:
            self._con.close()
            raise
        self._cursor_lock = threading.Lock()
        # Makes the closed check and queue.put_nowait one step, so nothing is queued after the
        # stop marker.
        self._state_lock = threading.Lock()
        self._closed = False
        self._queue: queue.Queue[_Op] = queue.Queue(maxsize=self.config.queue_size)
        self._thread = threading.Thread(
            target=self._run, name=f"store-writer[{self.config.path.name}]", daemon=True
        )
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.config.path

    # ----------------------------------------------------------------------------- public API

    def insert_generations(self, rows: GenerationRows) -> cf.Future[int]:
        """Queue rows for insertion; the Future gives how many were new (not already stored).

        Validation happens here, in the caller: a bad batch raises ``ValueError`` at once and
        nothing of it is written. A batch is written in one transaction, all or nothing.
        """
        table = generations_table(rows)
        future: cf.Future[int] = cf.Future()
        if table.num_rows == 0:
            self._check_open()
            future.set_result(0)
            return future
        self._submit(_InsertOp(table, future))
        return future

    def upsert_run(self, run_id: str, name: str | None, kind: str | None,
                   config: Mapping[str, Any] | None, status: str | None) -> cf.Future[None]:
        """Create the run, or update its name, kind, config and status (created_at is kept)."""
        _require_id("run_id", run_id)
        try:
            config_json = None if config is None else json.dumps(dict(config), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run {run_id!r}: config must be JSON-serializable: {exc}") from exc
        params = (run_id, name, kind, utc_now(), config_json, status)
        return self._submit_sql(_UPSERT_RUN_SQL, params, lambda _count: None)

    def set_run_status(self, run_id: str, status: str) -> cf.Future[None]:
        """Set a run's status; the Future raises ``KeyError`` if there is no such run."""
        _require_id("run_id", run_id)

        def require_one(count: int) -> None:
            if count == 0:
                raise KeyError(f"no run with run_id {run_id!r}")

        return self._submit_sql(_SET_RUN_STATUS_SQL, (status, run_id), require_one)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> cf.Future[None]:
        """Queue one parameterized statement (the store/ modules own the SQL); the Future raises its error."""
        return self._submit_sql(sql, tuple(params), lambda _count: None)

    def write_table(self, sql: str, table: pa.Table) -> cf.Future[None]:
        """Queue ``sql``, which reads ``table`` as the view ``TABLE_VIEW``, in one transaction."""
        future: cf.Future[None] = cf.Future()
        self._submit(_TableOp(sql, table, future))
        return future

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for reads, for use in one thread; close it (or use it in ``with``)."""
        with self._cursor_lock:
            self._check_open()
            return self._cursor_source.cursor()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every operation queued before this call has been executed.

        Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        future: cf.Future[None] = cf.Future()
        self._submit(_BarrierOp(future), timeout=timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            future.result(timeout=remaining)
        except cf.TimeoutError as exc:
            raise TimeoutError(f"store writer did not catch up within {timeout} s") from exc

    def close(self) -> None:
        """Execute everything queued, stop the writer thread and close the database. Idempotent."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("StoreWriter.close() called from the writer thread (a Future callback)")
        with self._state_lock:
            already_closed = self._closed
            self._closed = True
        if not already_closed:
            # Nothing can be queued once _closed is set, so the stop marker is the last op. Put it
            # outside the lock: waiting for space must not block the writer thread's callbacks.
            self._queue.put(_StopOp())
        self._thread.join()
        if already_closed:
            return
        with self._cursor_lock:
            # Closing a connection closes the cursors made from it, so readers still open fail
            # cleanly afterwards instead of keeping the file open.
            self._cursor_source.close()
            self._con.close()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ----------------------------------------------------------------------------- producer side

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self.config.path} is closed")

    def _submit(self, op: _Op, timeout: float | None = None) -> None:
        """Queue ``op``, waiting for space while the writer is ``queue_size`` ops behind.

        The wait happens outside the lock, so close() and Future callbacks (which run on the
        writer thread) are never stuck behind a producer waiting for space.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        on_writer_thread = threading.current_thread() is self._thread
        while True:
            with self._state_lock:
                self._check_open()
                try:
                    self._queue.put_nowait(op)
                    return
                except queue.Full:
                    pass
            # The writer cannot wait for itself to drain the queue: fail instead of hanging.
            if on_writer_thread or (deadline is not None and time.monotonic() >= deadline):
                raise TimeoutError(f"store writer queue is full ({self.config.queue_size} ops)")
            time.sleep(_FULL_QUEUE_POLL_S)

    def _submit_sql(self, sql: str, params: tuple[Any, ...],
                    interpret: Callable[[int], Any]) -> cf.Future[Any]:
        future: cf.Future[Any] = cf.Future()
        self._submit(_SqlOp(sql, params, future, interpret))
        return future

    # ----------------------------------------------------------------------------- writer thread

    def _run(self) -> None:
        carried: _Op | None = None  # an op taken off the queue while coalescing, run next
        while True:
            op = carried if carried is not None else self._queue.get()
            carried = None
            if isinstance(op, _StopOp):
                return
            if isinstance(op, _InsertOp):
                group = [op]
                rows = op.table.num_rows
                while rows < self.config.coalesce_rows:
                    try:
                        waiting = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(waiting, _InsertOp):
                        carried = waiting  # keep order: it runs right after this group
                        break
                    group.append(waiting)
                    rows += waiting.table.num_rows
                self._guarded(self._run_inserts, group, [o.future for o in group])
            elif isinstance(op, _SqlOp):
                self._guarded(self._run_sql, op, [op.future])
            elif isinstance(op, _TableOp):
                self._guarded(self._run_table, op, [op.future])
            else:
                self._guarded(self._run_barrier, op, [op.future])

    def _guarded(self, action: Callable[[Any], None], arg: Any, futures: list[cf.Future[Any]]) -> None:
        """Run ``action``; should it fail unexpectedly, fail its Futures instead of the thread."""
        try:
            action(arg)
        except BaseException as exc:  # noqa: BLE001 - the writer thread must survive anything
            self._rollback_if_open()
            for future in futures:
                if not future.done() and (future.running() or future.set_running_or_notify_cancel()):
                    future.set_exception(exc)

    def _run_barrier(self, op: _BarrierOp) -> None:
        if op.future.set_running_or_notify_cancel():
            op.future.set_result(None)

    def _run_sql(self, op: _SqlOp) -> None:
        if not op.future.set_running_or_notify_cancel():
            return
        try:
            # fetchall, not fetchone: a result left unfinished blocks the next statement on this connection.
            rows = self._con.execute(op.sql, op.params).fetchall()
            result = op.interpret(int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0)
        except Exception as exc:  # noqa: BLE001 - any failure belongs to the caller's Future
            op.future.set_exception(exc)
        else:
            op.future.set_result(result)

    def _run_table(self, op: _TableOp) -> None:
        if not op.future.set_running_or_notify_cancel():
            return
        con = self._con
        con.register(TABLE_VIEW, op.table)
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute(op.sql)
            con.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - any failure belongs to the caller's Future
            self._rollback_if_open()
            op.future.set_exception(exc)
        else:
            op.future.set_result(None)
        finally:
            con.unregister(TABLE_VIEW)

    def _run_inserts(self, group: list[_InsertOp]) -> None:
        live = [op for op in group if op.future.set_running_or_notify_cancel()]
        if len(live) > 1:
            try:
                counts = self._insert_in_transaction([op.table for op in live])
            except Exception:  # noqa: BLE001, S110 - one bad batch must not fail the others:
                pass  # retry them one by one below, each Future then gets its own outcome
            else:
                for op, count in zip(live, counts):
                    op.future.set_result(count)
                return
        for op in live:
            try:
                (count,) = self._insert_in_transaction([op.table])
            except Exception as exc:  # noqa: BLE001 - any failure belongs to the caller's Future
                op.future.set_exception(exc)
            else:
                op.future.set_result(count)

    def _insert_in_transaction(self, tables: list[pa.Table]) -> list[int]:
        """Insert the tables' new rows in one transaction; return the count inserted per table."""
        merged = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        if merged.column("gen_id").num_chunks * _MIN_ROWS_PER_CHUNK > merged.num_rows:
            merged = merged.combine_chunks()
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            gen_ids = merged.column("gen_id")
            bounds = pc.min_max(gen_ids)
            keys = pa.table({"gen_id": gen_ids,
                             "pos": pa.array(np.arange(merged.num_rows, dtype=np.int64))})
            con.register(_KEYS_VIEW, keys)
            try:
                positions = con.execute(
                    _FRESH_POSITIONS_SQL, [bounds["min"].as_py(), bounds["max"].as_py()]
                ).fetchnumpy()["pos"]
            finally:
                con.unregister(_KEYS_VIEW)
            positions = np.asarray(positions, dtype=np.int64)
            if len(positions):
                fresh = merged if len(positions) == merged.num_rows else merged.take(positions)
                con.register(_BATCH_VIEW, fresh)
                try:
                    con.execute(_INSERT_SQL)
                finally:
                    con.unregister(_BATCH_VIEW)
            con.execute("COMMIT")
        except BaseException:
            self._rollback_if_open()
            raise
        ends = np.cumsum([t.num_rows for t in tables])
        # positions are sorted, so each table's count is how many fall below its end.
        below = np.searchsorted(positions, ends, side="left")
        return np.diff(below, prepend=0).astype(int).tolist()

    def _rollback_if_open(self) -> None:
        try:
            self._con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # no transaction was open


def _require_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")

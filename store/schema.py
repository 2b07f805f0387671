"""DuckDB schema of the budgetlab store, and the migrations that create it.

The generation columns are declared once, in ``GENERATION_COLUMNS``; the ``CREATE TABLE``
statement and the Arrow schema the writer inserts with are both derived from that tuple, so
they cannot drift apart.

Usage::

    con = duckdb.connect("data/budgetlab.duckdb")
    migrate(con)            # creates or upgrades the tables; safe to call on every start

``migrate`` refuses (``SchemaVersionError``) a file written by a newer budgetlab, rather than
guessing at tables it does not know.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import duckdb
import pyarrow as pa

SCHEMA_VERSION = 6


class SchemaVersionError(RuntimeError):
    """The database file's schema version is one this code does not know."""


class Column(NamedTuple):
    """One column of the ``generations`` table, with its DuckDB and Arrow types."""

    name: str
    duckdb_type: str
    arrow_type: pa.DataType
    # NOT NULL with no default: every inserted row must carry a value.
    required: bool = False
    # NOT NULL with this default, which the writer fills in for a missing or null value.
    default: int | None = None


GENERATION_COLUMNS: tuple[Column, ...] = (
    Column("gen_id", "VARCHAR", pa.string(), required=True),
    Column("run_id", "VARCHAR", pa.string(), required=True),
    # Naive UTC: DuckDB's TIMESTAMP has no zone, and every writer stamps UTC.
    Column("created_at", "TIMESTAMP", pa.timestamp("us"), required=True),
    Column("model", "VARCHAR", pa.string(), required=True),
    Column("controller", "VARCHAR", pa.string(), required=True),
    Column("budget", "INTEGER", pa.int32(), required=True),
    Column("dataset", "VARCHAR", pa.string()),
    Column("question_id", "VARCHAR", pa.string()),
    Column("question", "VARCHAR", pa.string(), required=True),
    Column("gold", "VARCHAR", pa.string()),
    Column("sample_idx", "INTEGER", pa.int32(), default=0),
    Column("seed", "BIGINT", pa.int64()),
    Column("temperature", "DOUBLE", pa.float64()),
    Column("top_p", "DOUBLE", pa.float64()),
    Column("prompt", "VARCHAR", pa.string()),
    Column("full_text", "VARCHAR", pa.string()),
    Column("thinking_text", "VARCHAR", pa.string()),
    Column("answer_text", "VARCHAR", pa.string()),
    Column("extracted_answer", "VARCHAR", pa.string()),
    Column("correct", "BOOLEAN", pa.bool_()),
    Column("prompt_tokens", "INTEGER", pa.int32()),
    Column("thinking_tokens", "INTEGER", pa.int32()),
    Column("answer_tokens", "INTEGER", pa.int32()),
    Column("total_tokens", "INTEGER", pa.int32()),
    Column("finish_reason", "VARCHAR", pa.string()),
    Column("waits_used", "INTEGER", pa.int32()),
    Column("ttft_s", "DOUBLE", pa.float64()),
    Column("latency_s", "DOUBLE", pa.float64()),
    # Keyword matches per category of backend.evaluation.keywords.KEYWORD_CATEGORIES, counted when the row
    # is made, and which version of the word lists counted them: the keyword view sums these and
    # recounts, in SQL, only rows counted with other lists (or none).
    Column("keyword_counts", "INTEGER[]", pa.list_(pa.int32())),
    Column("keywords_version", "VARCHAR", pa.string()),
    # Test-time compute (schema 4). A parallel controller's samples (maj4:l1_exact) are one row
    # each, sharing group_id (the first sample's gen_id); budget is the group's total N, and
    # inner_budget the sample's floor(N / K). answer_class: the group_idx of the first sample
    # with an equivalent answer; chosen: the sample whose answer the group gives.
    Column("budget_kind", "VARCHAR", pa.string()),  # hint | guaranteed | none
    Column("group_id", "VARCHAR", pa.string()),
    Column("group_idx", "INTEGER", pa.int32()),
    Column("inner_budget", "INTEGER", pa.int32()),
    Column("answer_class", "INTEGER", pa.int32()),
    Column("chosen", "BOOLEAN", pa.bool_()),
    Column("answer_logprob", "DOUBLE", pa.float64()),  # mean log-probability of the generated answer tokens (best-of)
    # early_exit: tokens its probes generated (compute, not output), the probes as JSON
    # [[thinking tokens so far, answer], ...] and where the answer settled for good.
    Column("probe_tokens", "INTEGER", pa.int32()),
    Column("probes", "VARCHAR", pa.string()),
    Column("settled_at", "INTEGER", pa.int32()),
    # Schema 5: where the token counts come from: "counted" (the served model's token ids),
    # "reported" (a chat endpoint's usage, thinking from its reasoning_tokens) or "estimated" (an
    # endpoint that reports no thinking count: its total split by the text's length).
    Column("token_counts", "VARCHAR", pa.string()),
    # Schema 6, verifier-guided methods (prmK, pvoteK, beamWxM, particlesP): tokens a verifier read
    # (another model's compute, billed apart from the policy's), a scored sample's aggregated score,
    # and the search tree as JSON: [{id, parent, depth, tokens, text, score, kept, chosen, done, oracle}, ...]
    # (a scored sample's steps as a chain). A search's token counts are its whole tree's.
    Column("verifier_tokens", "INTEGER", pa.int32()),
    Column("verifier_score", "DOUBLE", pa.float64()),
    Column("search_tree", "VARCHAR", pa.string()),
)

GENERATION_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in GENERATION_COLUMNS)

# Exactly the layout of the table, column for column: the writer inserts tables of this schema.
GENERATION_ARROW_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, c.arrow_type, nullable=not c.required) for c in GENERATION_COLUMNS]
)

def generations_ddl(primary_key: bool = True) -> str:
    """``CREATE TABLE IF NOT EXISTS generations (...)`` derived from ``GENERATION_COLUMNS``.

    ``primary_key=False`` exists only so the ingest benchmark can measure what the key costs;
    the application always uses the key (it is what makes re-inserts idempotent).
    """
    lines = []
    for column in GENERATION_COLUMNS:
        line = f"    {column.name} {column.duckdb_type}"
        if column.name == "gen_id" and primary_key:
            line += " PRIMARY KEY"
        elif column.required:
            line += " NOT NULL"
        if column.default is not None:
            line += f" NOT NULL DEFAULT {column.default}"
        lines.append(line)
    return "CREATE TABLE IF NOT EXISTS generations (\n" + ",\n".join(lines) + "\n)"


RUNS_DDL = """CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    name VARCHAR,
    kind VARCHAR,  -- 'compare' | 'sweep' | ...: free text, so a new kind needs no migration
    created_at TIMESTAMP,
    config JSON,
    status VARCHAR
)"""

SCHEMA_VERSION_DDL = """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMP NOT NULL
)"""

# Fine-tune jobs launched from the Train tab, copied here from their job folders (the folder's
# state.json is the truth; this copy is for the analytics, one row per job, updated in place).
TRAINING_JOBS_DDL = """CREATE TABLE IF NOT EXISTS training_jobs (
    job_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    model_name VARCHAR,
    state VARCHAR NOT NULL,  -- scheduled | queued | running | finished | failed | cancelled | interrupted
    schedule VARCHAR,  -- now | at | cron
    schedule_id VARCHAR,  -- the recurring schedule that started it, if any
    created_at TIMESTAMP,
    run_at TIMESTAMP,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    exit_code INTEGER,
    error VARCHAR,
    step INTEGER,
    max_steps INTEGER,
    output_dir VARCHAR,
    config JSON,
    updated_at TIMESTAMP NOT NULL
)"""

# One row per (job, logged step) of a job's metrics.jsonl; a resumed job logs some steps again, and
# the newer line replaces the older.
TRAINING_METRICS_DDL = """CREATE TABLE IF NOT EXISTS training_metrics (
    job_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    logged_at TIMESTAMP,
    elapsed_s DOUBLE,
    reward DOUBLE,
    reward_std DOUBLE,
    correct DOUBLE,
    mean_length DOUBLE,
    mean_abs_rel_dev DOUBLE,
    over_target DOUBLE,
    clipped_ratio DOUBLE,
    loss DOUBLE,
    grad_norm DOUBLE,
    learning_rate DOUBLE,
    raw JSON,
    PRIMARY KEY (job_id, step)
)"""

# (version, statements), in order. Append new versions; never edit a released one, because files
# already at that version will not run it again.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, (RUNS_DDL, generations_ddl())),
    (2, (TRAINING_JOBS_DDL, TRAINING_METRICS_DDL)),
    (3, ("ALTER TABLE generations ADD COLUMN IF NOT EXISTS keyword_counts INTEGER[]",
         "ALTER TABLE generations ADD COLUMN IF NOT EXISTS keywords_version VARCHAR")),
    (4, tuple(f"ALTER TABLE generations ADD COLUMN IF NOT EXISTS {c.name} {c.duckdb_type}" for c in GENERATION_COLUMNS
              if c.name in ("budget_kind", "group_id", "group_idx", "inner_budget", "answer_class", "chosen", "answer_logprob",
                            "probe_tokens", "probes", "settled_at"))),
    (5, ("ALTER TABLE generations ADD COLUMN IF NOT EXISTS token_counts VARCHAR",)),
    (6, tuple(f"ALTER TABLE generations ADD COLUMN IF NOT EXISTS {c.name} {c.duckdb_type}" for c in GENERATION_COLUMNS
              if c.name in ("verifier_tokens", "verifier_score", "search_tree"))),
)
assert MIGRATIONS[-1][0] == SCHEMA_VERSION, "SCHEMA_VERSION must be the last migration"


def utc_now() -> dt.datetime:
    """The current time as a naive UTC datetime, the convention of every TIMESTAMP column here."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version recorded in the file; 0 for a file without a ``schema_version`` table."""
    # fetchall, not fetchone: DuckDB keeps a result open until a fetch comes back empty, and an
    # open result makes the connection refuse the writer's next register().
    (has_table,) = con.execute(
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
        ["schema_version"],
    ).fetchall()
    if has_table[0] == 0:
        return 0
    ((version,),) = con.execute("SELECT max(version) FROM schema_version").fetchall()
    return int(version) if version is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the database up to ``SCHEMA_VERSION`` and return that version.

    Idempotent: migrations already recorded in ``schema_version`` are skipped. Each migration
    runs in its own transaction together with its ``schema_version`` row, so a crash leaves the
    file at the previous version, never half-migrated.
    """
    found = current_version(con)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"database schema version {found} is newer than this code knows "
            f"(up to {SCHEMA_VERSION}); it was written by a newer budgetlab. "
            "Upgrade budgetlab, or open a different store file."
        )
    for version, statements in MIGRATIONS:
        if version <= found:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(SCHEMA_VERSION_DDL)
            for statement in statements:
                con.execute(statement)
            con.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                [version, utc_now()],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION

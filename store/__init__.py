"""budgetlab's store: every generation and run, kept in one DuckDB file.

All SQL of the project lives in this package. ``schema`` defines the tables and migrations,
``rows`` validates generation rows, ``writer`` is the single writer (one thread, one read-write
connection), ``queries`` the read functions, which take a cursor from ``StoreWriter.reader()``,
and ``ids.new_gen_id`` makes time-ordered generation keys, which the store indexes fastest::

    from store import StoreConfig, StoreWriter, queries
"""

from store import queries
from store.ids import new_gen_id
from store.schema import GENERATION_COLUMNS, SCHEMA_VERSION, SchemaVersionError, migrate
from store.writer import StoreClosedError, StoreConfig, StoreWriter

__all__ = [
    "GENERATION_COLUMNS",
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "StoreClosedError",
    "StoreConfig",
    "StoreWriter",
    "migrate",
    "new_gen_id",
    "queries",
]

"""Validate generation rows and convert them to the Arrow layout the store writer inserts.

``generations_table`` accepts a list of dicts or a ``pyarrow.Table``/``RecordBatch`` and returns a
table with exactly ``GENERATION_ARROW_SCHEMA``: columns in table order, cast to the table's
types, missing optional columns as nulls, defaults filled in. It raises ``ValueError`` (naming the
column) for unknown columns, values that do not convert, and required columns that are missing or
null, so a bad batch fails in the caller before anything is queued or written::

    table = generations_table([{"gen_id": "g1", "run_id": "r1", ...}])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from store.schema import (
    GENERATION_ARROW_SCHEMA,
    GENERATION_COLUMN_NAMES,
    GENERATION_COLUMNS,
)

GenerationRows = Sequence[Mapping[str, Any]] | pa.Table | pa.RecordBatch

_KNOWN_NAMES = frozenset(GENERATION_COLUMN_NAMES)
# Errors pyarrow raises for a value that does not fit a column's type.
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError,
                      TypeError, OverflowError, ValueError)


def generations_table(rows: GenerationRows) -> pa.Table:
    """Return ``rows`` as a table of ``GENERATION_ARROW_SCHEMA``, or raise ``ValueError``."""
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        return _from_arrow(rows)
    if isinstance(rows, Mapping):
        raise TypeError("expected a list of generation dicts (or an Arrow table), got one dict")
    if isinstance(rows, (str, bytes)):
        raise TypeError(f"expected a list of generation dicts (or an Arrow table), got {type(rows).__name__}")
    return _from_dicts(rows)


def _from_dicts(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"generation row {index} is a {type(row).__name__}, expected a dict")
        seen.update(row.keys())
    unknown = sorted(str(name) for name in seen - _KNOWN_NAMES)
    if unknown:
        first_row = next(i for i, row in enumerate(rows) if unknown[0] in row)
        raise ValueError(
            f"unknown generation column(s) {unknown} (first in row {first_row}); "
            f"known columns: {list(GENERATION_COLUMN_NAMES)}"
        )
    arrays: dict[str, pa.Array] = {}
    for column in GENERATION_COLUMNS:
        if column.name not in seen:
            continue
        values = [row.get(column.name) for row in rows]
        try:
            arrays[column.name] = pa.array(values, type=column.arrow_type)
        except _CONVERSION_ERRORS as exc:
            raise ValueError(f"generation column {column.name!r}: cannot convert to "
                             f"{column.arrow_type}: {exc}") from exc
    return _assemble(arrays, len(rows))


def _from_arrow(table: pa.Table) -> pa.Table:
    names = table.column_names
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"generation table has duplicate column(s) {duplicated}")
    unknown = sorted(set(names) - _KNOWN_NAMES)
    if unknown:
        raise ValueError(f"unknown generation column(s) {unknown}; "
                         f"known columns: {list(GENERATION_COLUMN_NAMES)}")
    arrays: dict[str, pa.ChunkedArray] = {}
    for column in GENERATION_COLUMNS:
        if column.name not in names:
            continue
        values = table.column(column.name)
        if values.type != column.arrow_type:
            try:
                values = values.cast(column.arrow_type)  # safe cast: overflow or lossy is an error
            except _CONVERSION_ERRORS as exc:
                raise ValueError(f"generation column {column.name!r}: cannot cast {values.type} "
                                 f"to {column.arrow_type}: {exc}") from exc
        arrays[column.name] = values
    return _assemble(arrays, table.num_rows)


def _assemble(arrays: Mapping[str, pa.Array | pa.ChunkedArray], num_rows: int) -> pa.Table:
    """Fill defaults and nulls, check required columns, and lay the columns out in table order."""
    if num_rows == 0:
        return GENERATION_ARROW_SCHEMA.empty_table()
    missing = [c.name for c in GENERATION_COLUMNS if c.required and c.name not in arrays]
    if missing:
        raise ValueError(f"missing required generation column(s) {missing}")
    columns: list[pa.Array | pa.ChunkedArray] = []
    for column in GENERATION_COLUMNS:
        values = arrays.get(column.name)
        if values is None:
            values = (pa.nulls(num_rows, column.arrow_type) if column.default is None
                      else pa.array([column.default] * num_rows, type=column.arrow_type))
        elif values.null_count and column.default is not None:
            values = pc.fill_null(values, pa.scalar(column.default, type=column.arrow_type))
        elif values.null_count and column.required:
            first_null = pc.index(pc.is_null(values), True).as_py()
            raise ValueError(f"required generation column {column.name!r} is null in "
                             f"{values.null_count} of {num_rows} rows (first: row {first_null})")
        columns.append(values)
    return pa.Table.from_arrays(columns, schema=GENERATION_ARROW_SCHEMA)

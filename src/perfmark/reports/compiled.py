"""Run Ibis expressions on DuckDB with their SQL compiled once per shape of expression.

Ibis compiles an expression to SQL in Python (sqlglot rewrites), which for a report costs
40 to 100 ms here: more than DuckDB takes to run it on a lake of a few days. Reports repeat
(the scheduler's bandit allocations and rules every hour, a dashboard's tiles on each
refresh), but every read of the lake is a new view, because files keep arriving, so two
runs of one report differ in the names of the views they read. This cache keys an
expression with each view it reads replaced by a placeholder of the same schema, and fills
the real, quoted view names into the cached SQL. Literals (workspace, time range, filters)
stay in the key, so the SQL of a key is what Ibis compiles for it (up to the order Ibis
gives some column sets, which follows Python's string hashing); tests check the rows
against Ibis's own path.

Ibis has no cache of its own for this, hence this module. Expressions holding in-memory
tables (registered by Ibis under new names on each run) and other engines go through
Ibis's own `to_pyarrow` unchanged.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from typing import Any

import ibis.expr.operations as ops
import ibis.expr.types as ir
import pyarrow as pa
from sqlglot import exp

__all__ = ["CACHE_SIZE", "compiled_sql", "sql_cache_info", "to_pyarrow"]

#: Shapes kept (least recently used dropped). An entry holds its key, the expression graph
#: (about 500 nodes for a report): measured about 0.5 MB each, so the cache stays under
#: about 32 MB. A day's dashboard pages, bandit allocations and rules use a few dozen.
CACHE_SIZE = 64
# A per-process token in the placeholder names, so that no filter value can contain one.
_TOKEN = secrets.token_hex(8)

_lock = threading.Lock()
_cache: OrderedDict[ops.Node, str] = OrderedDict()
_stats = {"hits": 0, "misses": 0}


def _placeholder(index: int) -> str:
    return f"__perfmark_read_{_TOKEN}_{index}__"


def _quoted(table: ops.DatabaseTable) -> str:
    namespace = table.namespace
    return str(
        exp.table_(table.name, db=namespace.database, catalog=namespace.catalog, quoted=True).sql(
            "duckdb"
        )
    )


def compiled_sql(backend: Any, expression: ir.Expr) -> str:
    """The DuckDB SQL of `expression`, as `backend.compile` gives it, from the cache if seen."""
    op = expression.as_table().op()
    reads: list[ops.DatabaseTable] = list(op.find(ops.DatabaseTable))
    placeholders = {
        read: ops.UnboundTable(name=_placeholder(index), schema=read.schema)
        for index, read in enumerate(reads)
    }
    shape = op.replace(placeholders) if placeholders else op
    with _lock:
        sql = _cache.get(shape)
        if sql is not None:
            _cache.move_to_end(shape)
            _stats["hits"] += 1
    if sql is None:
        sql = str(backend.compile(shape.to_expr()))
        with _lock:
            _stats["misses"] += 1
            _cache[shape] = sql
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    for index, read in enumerate(reads):
        sql = sql.replace(f'"{_placeholder(index)}"', _quoted(read))
    return sql


def to_pyarrow(backend: Any, expression: ir.Expr) -> pa.Table:
    """`backend.to_pyarrow(expression)`, with the SQL compiled once per shape on DuckDB."""
    if getattr(backend, "name", None) != "duckdb" or expression.op().find(ops.InMemoryTable):
        table: pa.Table = backend.to_pyarrow(expression)
        return table
    from ibis.backends.duckdb.converter import DuckDBPyArrowData

    result = backend.con.sql(compiled_sql(backend, expression)).to_arrow_table()
    converted: pa.Table = expression.__pyarrow_result__(result, data_mapper=DuckDBPyArrowData)
    return converted


def sql_cache_info() -> dict[str, int]:
    """Hits, misses and entries of the cache (for tests and metrics)."""
    with _lock:
        return {**_stats, "size": len(_cache)}

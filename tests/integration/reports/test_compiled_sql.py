"""Report SQL compiled once per shape of expression: the same rows as Ibis's own path.

The SQL texts are not compared: Ibis lists some column sets (an EXCLUDE) in an order that
depends on Python's string hashing, so two compiles of equivalent expressions may differ in
that order only.
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.operations as ops
import pyarrow as pa

from perfmark.reports import compiled
from perfmark.reports.domain.catalog import BASE_MEASURES
from perfmark.reports.domain.request import parse_report_request
from perfmark.reports.query import LakeQuery
from perfmark.services.accounts import NewWorkspace


def _expression(query: LakeQuery, workspace_id: str, **arguments: Any) -> Any:
    arguments.setdefault("start", "2026-01-14")
    arguments.setdefault("end", "2026-01-16")
    request = parse_report_request(workspace_id, **arguments)
    events = query.events_for(request, BASE_MEASURES)
    assert events is not None
    return query.expression(events, request, BASE_MEASURES)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=repr)


def _check_sql(query: LakeQuery, expression: Any) -> str:
    """The cached SQL reads the expression's own views, and no placeholder is left."""
    sql = compiled.compiled_sql(query.backend, expression)
    for read in expression.op().find(ops.DatabaseTable):
        assert f'"{read.name}"' in sql
    assert compiled._TOKEN not in sql  # every placeholder was filled
    return sql


def test_a_second_read_of_a_report_reuses_its_sql_and_gives_ibis_rows(
    query: LakeQuery, eur_workspace: NewWorkspace
) -> None:
    workspace_id = eur_workspace.workspace.id
    first = _expression(query, workspace_id, dimensions="campaign,day")
    second = _expression(query, workspace_id, dimensions="campaign,day")
    # Each read of the lake is a view of its own: the expressions differ only in that name.
    assert first.op() != second.op()
    before = compiled.sql_cache_info()
    for expression in (first, second):
        _check_sql(query, expression)
    after = compiled.sql_cache_info()
    assert after["hits"] >= before["hits"] + 1
    got = compiled.to_pyarrow(query.backend, second)
    expected = query.backend.to_pyarrow(second)
    assert got.schema == expected.schema
    assert _rows(got) == _rows(expected) and got.num_rows > 0


def test_literals_stay_in_the_key(query: LakeQuery, eur_workspace: NewWorkspace) -> None:
    workspace_id = eur_workspace.workspace.id
    whole = _expression(query, workspace_id, dimensions="campaign")
    one_day = _expression(query, workspace_id, dimensions="campaign", end="2026-01-14")
    other_workspace = _expression(query, "ws_other", dimensions="campaign")
    for expression in (whole, one_day, other_workspace):
        _check_sql(query, expression)
        assert _rows(compiled.to_pyarrow(query.backend, expression)) == _rows(
            query.backend.to_pyarrow(expression)
        )
    assert compiled.to_pyarrow(query.backend, other_workspace).num_rows == 0
    assert compiled.to_pyarrow(query.backend, whole).num_rows > 0


def test_a_filter_value_that_looks_like_a_placeholder_is_kept_as_text(
    query: LakeQuery, eur_workspace: NewWorkspace
) -> None:
    lookalike = '"__perfmark_read_0__"'
    expression = _expression(
        query, eur_workspace.workspace.id, dimensions="campaign", filters={"campaign": lookalike}
    )
    assert lookalike in _check_sql(query, expression)
    assert _rows(compiled.to_pyarrow(query.backend, expression)) == _rows(
        query.backend.to_pyarrow(expression)
    )


def test_in_memory_tables_and_other_shapes_take_ibis_path(duckdb_backend: Any) -> None:
    table = ibis.memtable({"a": [1, 2, 2], "b": ["x", "y", "y"]})
    expression = table.group_by("b").aggregate(n=table.count()).order_by("b")
    before = compiled.sql_cache_info()
    got = compiled.to_pyarrow(duckdb_backend, expression)
    assert got.to_pylist() == [{"b": "x", "n": 1}, {"b": "y", "n": 2}]
    assert compiled.sql_cache_info()["misses"] == before["misses"]


def test_the_cache_is_bounded(
    query: LakeQuery, eur_workspace: NewWorkspace, monkeypatch: Any
) -> None:
    monkeypatch.setattr(compiled, "CACHE_SIZE", 2)
    workspace_id = eur_workspace.workspace.id
    for day in ("2026-01-14", "2026-01-15", "2026-01-16"):
        expression = _expression(query, workspace_id, start=day, end=day)
        compiled.compiled_sql(query.backend, expression)
    assert compiled.sql_cache_info()["size"] <= 2

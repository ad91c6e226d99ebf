"""docs/metrics.md documents every metric (with its exact formula), base measure and dimension."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from perfmark.reports.domain.catalog import BASE_MEASURES, DIMENSIONS, METRICS, measures_of

DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"
_ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|(.*)\|\s*$")


def _section(title: str) -> dict[str, list[str]]:
    """The table rows under a `## title` heading: first cell (a `name`) -> the other cells."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == title
            continue
        match = _ROW.match(line) if inside else None
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_is_documented_with_its_formula(name: str) -> None:
    rows = _section("Metrics")
    assert name in rows, f"docs/metrics.md has no row for metric {name!r}"
    formula, measures = rows[name]
    assert formula == METRICS[name].formula
    assert measures == ", ".join(measures_of((name,)))


@pytest.mark.parametrize("name", list(BASE_MEASURES))
def test_every_base_measure_is_documented(name: str) -> None:
    rows = _section("Base measures")
    assert name in rows and rows[name][0], f"docs/metrics.md has no row for measure {name!r}"


@pytest.mark.parametrize("name", list(DIMENSIONS))
def test_every_dimension_is_documented(name: str) -> None:
    rows = _section("Dimensions")
    assert name in rows, f"docs/metrics.md has no row for dimension {name!r}"
    column, meaning = rows[name]
    assert column == f"`{DIMENSIONS[name].column}`" and meaning == DIMENSIONS[name].description


def test_the_doc_names_nothing_that_is_not_in_the_catalog() -> None:
    assert set(_section("Metrics")) == set(METRICS)
    assert set(_section("Base measures")) == set(BASE_MEASURES)
    assert set(_section("Dimensions")) == set(DIMENSIONS)

"""`perfmark report` in-process on a data directory whose lake holds the standard dataset."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from perfmark.cli.main import app
from perfmark.domain.accounts import WorkspaceSpec
from perfmark.services.accounts import create_workspace
from perfmark.services.container import build_container
from perfmark.settings import lake_directory, load_settings

from .lake_data import standard_events, write_events

EXIT_INVALID = 2
RANGE = ("--from", "2026-01-14", "--to", "2026-01-16")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PERFMARK_HOME with a EUR workspace and the standard dataset in its lake."""
    for name in list(os.environ):
        if name.startswith("PERFMARK_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "home"
    monkeypatch.setenv("PERFMARK_HOME", str(directory))
    monkeypatch.setenv("COLUMNS", "200")
    settings = load_settings({"PERFMARK_HOME": str(directory)})
    container = build_container(settings)
    workspace = create_workspace(container, WorkspaceSpec(name="CLI", currency="EUR"), "o@x.org")
    container.engine.dispose()
    write_events(lake_directory(settings), standard_events(workspace.workspace.id))
    return directory


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, ["report", *args])
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return result


def test_json(home: Path) -> None:
    result = run("--by", "campaign,day", *RANGE, "--tz", "America/New_York",
                 "--metrics", "clicks,conversions,cost,cpa", "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["timezone"] == "America/New_York" and body["currency"] == "EUR"
    rows = {(row["campaign"], row["day"]): row for row in body["rows"]}
    # In New York the 23:30 UTC click and the 01:30 UTC conversion are both on Jan 14.
    assert rows[("cmp_1", "2026-01-14")] == {
        "campaign": "cmp_1",
        "campaign_name": None,
        "day": "2026-01-14",
        "clicks": 3,
        "conversions": 2,
        "cost": "8.5",
        "cpa": "4.25",
    }
    assert body["totals"]["cost"] == "8.52"


def test_csv_with_filter_and_sort(home: Path) -> None:
    result = run("--by", "sub1", *RANGE, "--metrics", "clicks,cost", "--filter", "campaign=cmp_1",
                 "--sort", "cost", "--format", "csv")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows == [["sub1", "clicks", "cost"], ["x", "2", "8"], ["y", "1", "0.5"], ["", "0", "0"]]


def test_table(home: Path) -> None:
    result = run("--by", "country", *RANGE, "--metrics", "impressions,clicks,ctr")
    assert result.exit_code == 0, result.output
    assert "2026-01-14 to 2026-01-16 (UTC, EUR)" in result.stdout
    lines = {line.split()[1]: line.split()[2:] for line in result.stdout.splitlines()
             if line.startswith("│")}  # fmt: skip
    assert lines["DE"] == ["│", "10", "│", "2", "│", "0.2", "│"]
    assert lines["TOTAL"] == ["│", "14", "│", "5", "│", "0.357143", "│"]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("--by", "planet"), "dimensions"),
        (("--tz", "Mars/Base"), "tz"),
        (("--from", "2026-01-32"), "from"),
        (("--metrics", "cpz"), "metrics"),
        (("--filter", "campaign"), "filter"),
        (("--format", "xml"), "format"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(
    home: Path, args: tuple[str, ...], field: str
) -> None:
    result = run(*RANGE, *args)
    assert result.exit_code == EXIT_INVALID, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"(field: {field})" in lines[0]

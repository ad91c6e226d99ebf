"""`perfmark costs import|list` and `perfmark rates import|list`, invoked with Typer's runner."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from perfmark.cli.costs import costs_app, rates_app
from perfmark.costs.services import daily_costs
from perfmark.services.container import build_container
from perfmark.settings import load_settings

from .conftest import DATA, Seeded, seed_workspace

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A data directory the CLI finds through PERFMARK_HOME."""
    return tmp_path / "cli_home"


@pytest.fixture
def seeded_home(home: Path) -> Seeded:
    """The sample campaigns in the CLI's store."""
    return seed_workspace(build_container(load_settings({"PERFMARK_HOME": str(home)})))


def _invoke(app: typer.Typer, home: Path, *args: str) -> Result:
    return runner.invoke(app, list(args), env={"PERFMARK_HOME": str(home)})


def test_import_google_export_with_a_campaign_map(home: Path, seeded_home: Seeded) -> None:
    shoes = seeded_home.campaigns["Spring Shoes"]
    result = _invoke(
        costs_app,
        home,
        "import",
        str(DATA / "costs" / "google_ads_campaign_report.csv"),
        "--layout",
        "google_ads",
        "--campaign-map",
        f"Generic - Shoes DE={shoes}",
        "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 9 and summary["totals"] == {"EUR": "11432.20"}
    rows = daily_costs(
        seeded_home.container, seeded_home.owner.workspace_id, date(2026, 1, 1), date(2026, 1, 3)
    )
    assert sum(row.spend for row in rows if row.campaign_id == shoes) == Decimal("7361.17")
    listed = _invoke(costs_app, home, "list", "--campaign", shoes, "--json")
    assert [row["spend"] for row in json.loads(listed.output)] == [
        "2450.00",
        "2312.40",
        "2598.77",
    ]
    table = _invoke(costs_app, home, "list", "--from", "2026-01-03", "--to", "2026-01-03")
    assert "2598.77" in table.output and "1204.50" not in table.output


def test_import_generic_with_mapping_options(home: Path, seeded_home: Seeded) -> None:
    result = _invoke(
        costs_app,
        home,
        "import",
        str(DATA / "costs" / "generic.csv"),
        "--layout",
        "generic",
        "--source",
        "taboola",
        "--campaign-column",
        "Kampagne",
        "--date-column",
        "Datum",
        "--spend-column",
        "Kosten",
        "--currency",
        "EUR",
        "--date-format",
        "%d.%m.%Y",
        "--decimal-separator",
        ",",
    )
    assert result.exit_code == 0, result.output
    assert "Imported 4 rows from taboola" in result.output
    assert "2306.49" in result.output


def test_bad_file_exits_2_naming_row_and_column(home: Path, seeded_home: Seeded) -> None:
    bad = home / "bad.csv"
    bad.write_text("Campaign,Day,Currency code,Cost\nBrand - Search,2026-01-01,EUR,1.2.3\n")
    result = _invoke(costs_app, home, "import", str(bad), "--layout", "google_ads")
    assert result.exit_code == 2
    assert "row 2, column 'Cost'" in result.output
    assert "Traceback" not in result.output
    missing = _invoke(costs_app, home, "import", str(home / "nope.csv"), "--layout", "meta_ads")
    assert missing.exit_code == 2 and "cannot read" in missing.output
    wrong = _invoke(
        costs_app, home, "import", str(bad), "--layout", "google_ads", "--currency", "EUR"
    )
    assert wrong.exit_code == 2 and "generic only" in wrong.output
    badmap = _invoke(
        costs_app, home, "import", str(bad), "--layout", "google_ads", "--campaign-map", "x"
    )
    assert badmap.exit_code == 2 and "NAME=CAMPAIGN_ID" in badmap.output
    workspace = seeded_home.owner.workspace_id
    assert daily_costs(seeded_home.container, workspace, date(2000, 1, 1), date(2100, 1, 1)) == []


def test_rates_import_and_list(home: Path, seeded_home: Seeded) -> None:
    first = _invoke(rates_app, home, "import", str(DATA / "rates.csv"))
    assert first.exit_code == 0, first.output
    assert "Imported 8 rates (0 replaced)" in first.output
    again = _invoke(rates_app, home, "import", str(DATA / "rates.csv"), "--json")
    assert json.loads(again.output) == {"rates": 8, "replaced": 8}
    listed = _invoke(rates_app, home, "list", "--base", "USD", "--json")
    assert [r["rate"] for r in json.loads(listed.output)] == ["157.32", "157.05"]
    bad = home / "rates.csv"
    bad.write_text("base,quote,rate,valid_from\nEUR,USD,abc,2026-01-01\n")
    failed = _invoke(rates_app, home, "import", str(bad))
    assert failed.exit_code == 2 and "line 2" in failed.output

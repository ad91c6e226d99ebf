"""`perfmark billing ...` on a real data directory (the Typer app, invoked in-process)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from perfmark.cli.billing import billing_app
from perfmark.clock import FixedClock
from perfmark.services.container import build_container
from perfmark.settings import load_settings

from .helpers import CPA, CPI, make_rig


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PERFMARK_HOME with the demo and a processed conversion, nothing else leaking in."""
    for name in list(os.environ):
        if name.startswith("PERFMARK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PERFMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


def run(*args: str) -> Result:
    result = CliRunner().invoke(billing_app, list(args))
    assert "Traceback" not in result.output
    return result


def ok(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_topup_approve_and_issue_from_the_command_line(home: Path, tmp_path: Path) -> None:
    rig = make_rig(tmp_path, FixedClock())
    rig.convert(CPA, value="10", txid="C-1")
    rig.process()
    [row] = rig.conversions()

    topped = ok("topup", rig.advertiser_id(CPI), "25.00", "--reference", "wire-1")
    assert topped["balance"] == "25.00" and topped["replayed"] is False
    assert ok("topup", rig.advertiser_id(CPI), "25.00", "--reference", "wire-1")["replayed"]
    negative = run("topup", rig.advertiser_id(CPI), "--", "-5")
    assert negative.exit_code == 2 and "above 0" in negative.output

    assert ok("approve", row["id"]) == {"changed": [row["id"]], "unchanged": [], "refused": []}
    assert ok("approve", row["id"], "cnv_nope")["refused"][0]["id"] == "cnv_nope"

    # Issue for the day that just ended (the clock of the CLI is the wall clock).
    settings = load_settings()
    container = build_container(settings)
    now = container.clock.now()
    container.engine.dispose()
    start = "2026-01-01"
    end = now.date().isoformat()
    csv_path = tmp_path / "invoice.csv"
    invoice = ok("invoices", "issue", rig.advertiser_id(CPA), "--from", start, "--to", end,
                 "--csv", str(csv_path))  # fmt: skip
    assert invoice["number"].startswith("INV-") and invoice["totals"][0]["amount"] == "25.00"
    assert csv_path.read_text().startswith("number,kind,party_id")
    assert [item["id"] for item in ok("invoices", "list")] == [invoice["id"]]
    statement = ok("statements", "issue", rig.publisher_id(CPA), "--from", start, "--to", end)
    assert statement["amount_due"] == [{"amount": "18.00", "currency": "USD"}]
    bad = run("invoices", "issue", rig.advertiser_id(CPA), "--from", "yesterday", "--to", end)
    assert bad.exit_code == 2 and "--from" in bad.output


def test_accept_takes_over_cap_conversions_once_there_is_room(home: Path, tmp_path: Path) -> None:
    rig = make_rig(tmp_path, FixedClock())
    rig.update_campaign(CPA, daily_budget="30")  # 25.00 each: one fits
    for txid in ("A-1", "A-2"):
        rig.convert(CPA, value="80", txid=txid)
    rig.process()
    status = {row["txid"]: (row["id"], row["status"]) for row in rig.conversions()}
    over, state = status["A-2"]
    assert state == "over_cap"
    refused = ok("accept", over)["refused"]
    assert [item["id"] for item in refused] == [over]
    assert "still over_cap" in refused[0]["reason"]
    rig.update_campaign(CPA, daily_budget="60")
    assert ok("accept", over) == {"changed": [over], "unchanged": [], "refused": []}
    assert {row["txid"]: row["status"] for row in rig.conversions()}["A-2"] == "pending"

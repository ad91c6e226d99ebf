"""`perfmark rules|experiments|recommend|simulate` on a real data directory."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from perfmark.cli.optimize import experiments_app, recommend_app, rules_app, simulate_command
from perfmark.services.container import build_container
from perfmark.settings import load_settings

from .conftest import Seeded, seed_workspace, traffic, write_lake

EXIT_INVALID = 2
cli = typer.Typer()
cli.add_typer(rules_app, name="rules")
cli.add_typer(experiments_app, name="experiments")
cli.add_typer(recommend_app, name="recommend")
cli.command("simulate")(simulate_command)


@pytest.fixture
def seeded_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    """A data directory with the seeded workspace and yesterday's traffic (real clock)."""
    for name in list(os.environ):
        if name.startswith("PERFMARK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PERFMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    container = build_container(load_settings())
    seeded = seed_workspace(container)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    write_lake(container, traffic(seeded, "bad", "p1", yesterday, 200, 2)
               + traffic(seeded, "bad", "p2", yesterday, 20, 1)
               + traffic(seeded, "good", "p1", yesterday, 100, 5, landing_page="lp-a")
               + traffic(seeded, "good", "p1", yesterday, 100, 8, landing_page="lp-b"))  # fmt: skip
    return seeded


def run(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ok_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_rules_from_the_command_line(seeded_home: Seeded) -> None:
    rule = {"name": "CPA guard", "scope": {"kind": "campaign"}, "window_days": 2,
            "conditions": [{"metric": "cpa", "operator": ">", "threshold": "40"}],
            "actions": [{"kind": "pause"}]}  # fmt: skip
    created = ok_json("rules", "create", "--data", json.dumps(rule))
    assert created["warnings"] == []
    assert [r["id"] for r in ok_json("rules", "list")] == [created["id"]]
    run_body = ok_json("rules", "evaluate", created["id"], "--dry-run")
    bad = next(t for t in run_body["targets"] if t["target_id"] == seeded_home.campaigns["bad"])
    assert bad["status"] == "dry_run"  # 220 clicks at 1.00 over 2 + 1 conversions
    assert Decimal(bad["conditions"][0]["value_now"]) == pytest.approx(Decimal(220) / 3)
    audit = ok_json("rules", "audit", created["id"])
    assert {row["status"] for row in audit} >= {"dry_run"}
    table = run("rules", "evaluate", created["id"], "--dry-run")
    assert table.exit_code == 0 and "dry run, would fire: cpa 73.3333 > 40" in table.stdout
    resume = {**rule, "name": "Resume", "actions": [{"kind": "resume"}],
              "conditions": [{"metric": "cpa", "operator": "<", "threshold": "60"}]}  # fmt: skip
    warned = run("rules", "create", "--data", json.dumps(resume))
    assert warned.exit_code == 0 and "warning (cycle)" in warned.stdout
    assert ok_json("rules", "check")[0]["code"] == "cycle"


def test_bad_rules_fail_with_one_line(seeded_home: Seeded, tmp_path: Path) -> None:
    rule = {"name": "x", "scope": {"kind": "campaign"}, "window_days": 2,
            "conditions": [{"metric": "cpx", "operator": ">", "threshold": "1"}],
            "actions": [{"kind": "pause"}]}  # fmt: skip
    result = run("rules", "create", "--data", json.dumps(rule))
    assert result.exit_code == EXIT_INVALID
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cpx" in lines[0] and lines[0].startswith("error: ")
    assert run("rules", "create").exit_code == EXIT_INVALID  # neither --file nor --data
    broken = tmp_path / "rule.json"
    broken.write_text("{not json", encoding="utf-8")
    assert run("rules", "create", "--file", str(broken)).exit_code == EXIT_INVALID


def test_experiments_and_recommendations(seeded_home: Seeded) -> None:
    experiment = {"name": "Pages", "arm_kind": "landing_page",
                  "campaign_id": seeded_home.campaigns["good"], "arms": ["lp-a", "lp-b"],
                  "start": "2000-01-01"}  # fmt: skip
    created = ok_json("experiments", "create", "--data", json.dumps(experiment))
    analysis = ok_json("experiments", "analysis", created["id"])
    arms = {arm["name"]: arm for arm in analysis["analysis"]["arms"]}
    assert (arms["lp-b"]["visitors"], arms["lp-b"]["conversions"]) == (100, 8)
    shown = run("experiments", "analysis", created["id"])
    assert shown.exit_code == 0 and "P(best)" in shown.stdout and "Decision:" in shown.stdout
    one_arm = {**experiment, "arms": ["lp-a"]}
    refused = run("experiments", "create", "--data", json.dumps(one_arm))
    assert refused.exit_code == EXIT_INVALID and "at least 2 arms" in refused.stderr
    bids = ok_json("recommend", "bids", seeded_home.campaigns["bad"], "--target-cpa", "30")
    assert {s["segment"] for s in bids["segments"]} == set(seeded_home.publishers.values())
    budget = ok_json("recommend", "budget", "--total", "150",
                     "--campaign", seeded_home.campaigns["good"],
                     "--campaign", seeded_home.campaigns["bad"])  # fmt: skip
    spends = [row["spend"] for row in budget["allocation"]["campaigns"]]
    assert sum(float(s) for s in spends) == pytest.approx(150)
    below = run("recommend", "budget", "--total", "-5")
    assert below.exit_code == EXIT_INVALID


def test_simulate_prints_the_days_and_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    body = ok_json("simulate", "--days", "2", "--scale", "0.1", "--home", str(tmp_path / "sim"))
    assert len(body["days"]) == 2 and body["policy"] == "optimizer"
    assert body["clicks"] == sum(sum(day["clicks"].values()) for day in body["days"])
    assert body["clicks"] > 0

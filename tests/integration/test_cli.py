"""The `perfmark` command line on a real data directory: init, demo, objects, keys, settings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from perfmark.adapters.store.kinds import ADVERTISERS, CAMPAIGNS, LINKS, OFFERS, PUBLISHERS
from perfmark.cli.main import app
from perfmark.domain.accounts import Role
from perfmark.services import catalog
from perfmark.services.accounts import authenticate_api_key, list_workspaces
from perfmark.services.container import Container, Principal, build_container
from perfmark.settings import load_settings

EXIT_INVALID = 2


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PERFMARK_HOME, with no other perfmark settings leaking in from outside."""
    for name in list(os.environ):
        if name.startswith("PERFMARK_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "home"
    monkeypatch.setenv("PERFMARK_HOME", str(directory))
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that Rich tables do not cut ids
    return directory


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """Invoke the CLI in-process; never a traceback, whatever the outcome."""
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ok_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    """Run a command that must fail on its input: exit 2 and one line on stderr."""
    result = run(*args, env=env)
    assert result.exit_code == EXIT_INVALID, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _container() -> Container:
    return build_container(load_settings())


def test_init_creates_a_workspace_and_a_working_key(home: Path) -> None:
    first = ok_json("init", "--workspace", "Acme", "--email", "me@acme.example")
    assert first["created"] is True
    assert first["api_key"].startswith("pmk_")
    assert (home / "perfmark.db").is_file()
    container = _container()
    principal = authenticate_api_key(container, first["api_key"])
    assert principal.workspace_id == first["workspace_id"] and principal.role is Role.OWNER
    assert [w.spec.name for w in list_workspaces(container)] == ["Acme"]
    # A second init changes nothing.
    again = ok_json("init")
    assert again == {"workspace_id": first["workspace_id"], "created": False}
    human = run("init")
    assert human.exit_code == 0 and first["workspace_id"] in human.stdout


def test_init_prints_the_key_for_people(home: Path) -> None:
    result = run("init")
    assert result.exit_code == 0
    assert "pmk_" in result.stdout and "Workspace" in result.stdout


def test_demo_seeds_a_realistic_workspace(home: Path) -> None:
    result = run("demo", "--no-serve")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "pmk_" in out and "/api/docs" in out
    assert out.count("/c/") >= 6  # tracking links to try
    container = _container()
    (workspace,) = list_workspaces(container)
    owner = Principal(workspace.id, Role.OWNER)

    def every(kind: Any) -> list[Any]:
        return list(catalog.list_objects(container, owner, kind, limit=200).items)

    assert len(every(ADVERTISERS)) >= 2
    publishers = every(PUBLISHERS)
    assert len(publishers) == 5
    assert len({p.spec.channel for p in publishers}) == 5
    campaigns = every(CAMPAIGNS)
    assert len(campaigns) == 6
    models = {rule.pays.model for c in campaigns for rule in c.spec.pricing}
    assert len(models) >= 5, models
    assert len(every(OFFERS)) >= 2
    links = every(LINKS)
    assert len(links) >= 6
    for link in links:
        assert f"/c/{link.spec.slug}" in out
    # The printed key works.
    key = next(word for word in out.split() if word.startswith("pmk_"))
    assert authenticate_api_key(container, key).workspace_id == workspace.id
    # Running it again does not seed twice.
    again = ok_json("demo", "--no-serve")
    assert again == {"workspace_id": workspace.id, "created": False}
    assert len(list_workspaces(_container())) == 1


def test_demo_json_for_scripts(home: Path) -> None:
    seeded = ok_json("demo", "--no-serve")
    assert seeded["created"] is True and seeded["api_key"].startswith("pmk_")
    assert len(seeded["links"]) == 6
    assert all(url.startswith("http://127.0.0.1:8000/c/") for url in seeded["links"])


def test_demo_after_init_says_which_workspace(home: Path) -> None:
    ok_json("init")
    result = run("demo", "--no-serve")
    seeded = next(w for w in list_workspaces(_container()) if w.spec.name == "Demo workspace")
    assert f"--workspace {seeded.id}" in result.stdout
    listed = ok_json("campaigns", "list", "--workspace", seeded.id)
    assert len(listed) == 6


def _ids(home: Path) -> dict[str, str]:
    """Seed the demo and return a few of its ids."""
    ok_json("demo", "--no-serve")
    container = _container()
    (workspace,) = list_workspaces(container)
    owner = Principal(workspace.id, Role.OWNER)
    adv = catalog.list_objects(container, owner, ADVERTISERS).items[0]
    offer = catalog.list_objects(container, owner, OFFERS, filters={"advertiser_id": adv.id})
    pub = catalog.list_objects(container, owner, PUBLISHERS).items[0]
    cmp = catalog.list_objects(container, owner, CAMPAIGNS).items[0]
    return {
        "advertiser": adv.id,
        "offer": offer.items[0].id,
        "publisher": pub.id,
        "campaign": cmp.id,
        "goal": cmp.spec.goal_ids[0],
        "currency": adv.spec.currency,
    }


def test_campaigns_list_table_and_json(home: Path) -> None:
    _ids(home)
    listed = ok_json("campaigns", "list")
    assert len(listed) == 6
    assert {c["status"] for c in listed} == {"active"}
    table = run("campaigns", "list")
    assert table.exit_code == 0
    for campaign in listed:
        assert campaign["id"] in table.stdout
        assert campaign["name"] in table.stdout
    assert ok_json("campaigns", "list", "--status", "draft") == []


def test_campaigns_create_from_options(home: Path) -> None:
    ids = _ids(home)
    made = ok_json(
        "campaigns", "create",
        "--name", "CLI campaign",
        "--advertiser", ids["advertiser"],
        "--offer", ids["offer"],
        "--channel", "display",
        "--goal", ids["goal"],
        "--pays", "cpa:7.5",
        "--earns", "cpa:5",
        "--currency", ids["currency"],
        "--daily-budget", "120.00",
    )  # fmt: skip
    assert made["name"] == "CLI campaign" and made["status"] == "draft"
    assert made["daily_budget"] == "120.00"
    assert made["pricing"][0]["pays"] == {"model": "cpa", "amount": "7.5", "percent": "0"}
    assert made["id"] in [c["id"] for c in ok_json("campaigns", "list")]
    human = run(
        "campaigns", "create", "--name", "Click buy", "--advertiser", ids["advertiser"],
        "--offer", ids["offer"], "--pays", "cpc:0.5", "--earns", "cpc:0.3",
    )  # fmt: skip
    assert human.exit_code == 0 and "created" in human.stdout


def test_campaigns_create_from_file(home: Path, tmp_path: Path) -> None:
    ids = _ids(home)
    spec = tmp_path / "campaign.json"
    spec.write_text(
        json.dumps(
            {
                "name": "From file",
                "advertiser_id": ids["advertiser"],
                "offer_id": ids["offer"],
                "currency": ids["currency"],
                "targeting": [{"field": "country", "values": ["fr"]}],
            }
        )
    )
    made = ok_json("campaigns", "create", "--from-file", str(spec))
    assert made["targeting"][0]["values"] == ["FR"]


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        (["--daily-budget", "-5"], "daily_budget"),
        (["--daily-budget", "abc"], "daily_budget"),
        (["--currency", "XXQ"], "currency"),
        (["--channel", "radio"], "channel"),
        (["--pays", "cpa5", "--earns", "cpa:1"], "pays"),
        (["--pays", "cpa:5"], "earns"),
        (["--pays", "cpa:5", "--earns", "cpa:3"], "goal"),
        (["--pays", "cpx:5", "--earns", "cpx:3", "--goal", "goal_x"], "cpx"),
        (["--status", "ended"], "status"),
        (["--status", "sleeping"], "sleeping"),
        (["--offer", "off_nope"], "off_nope"),
    ],
)
def test_campaigns_create_refuses_bad_input(home: Path, extra: list[str], mentions: str) -> None:
    ids = _ids(home)
    args = {"--name": "Bad", "--advertiser": ids["advertiser"], "--offer": ids["offer"]}
    for index in range(0, len(extra), 2):
        args[extra[index]] = extra[index + 1]
    line = refused("campaigns", "create", *[part for pair in args.items() for part in pair])
    assert mentions in line
    assert len(ok_json("campaigns", "list")) == 6


def test_campaigns_create_needs_name_advertiser_offer(home: Path, tmp_path: Path) -> None:
    _ids(home)
    assert "--name" in refused("campaigns", "create")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "from_file" in refused("campaigns", "create", "--from-file", str(broken))
    missing = tmp_path / "missing.json"
    assert "from_file" in refused("campaigns", "create", "--from-file", str(missing))


def test_links_create_prints_the_tracking_url(home: Path) -> None:
    ids = _ids(home)
    made = ok_json(
        "links", "create", "--campaign", ids["campaign"], "--publisher", ids["publisher"],
        "--slug", "cli-link", "--sub", "sub1=banner", "--utm", "source=cli",
    )  # fmt: skip
    assert made["tracking_url"] == "http://127.0.0.1:8000/c/cli-link"
    assert made["sub1"] == "banner" and made["utm_source"] == "cli"
    human = run("links", "create", "--campaign", ids["campaign"], "--publisher", ids["publisher"])
    assert human.exit_code == 0
    assert "http://127.0.0.1:8000/c/" in human.stdout
    listed = ok_json("links", "list", "--campaign", ids["campaign"])
    assert "http://127.0.0.1:8000/c/cli-link" in [link["tracking_url"] for link in listed]


def test_links_create_uses_the_base_url_setting(home: Path) -> None:
    ids = _ids(home)
    env = {"PERFMARK_BASE_URL": "https://t.example.com"}
    result = run(
        "links", "create", "--campaign", ids["campaign"], "--publisher", ids["publisher"],
        "--slug", "based", "--json", env=env,
    )  # fmt: skip
    assert json.loads(result.stdout)["tracking_url"] == "https://t.example.com/c/based"


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        (["--sub", "sub9=x"], "sub"),
        (["--sub", "novalue"], "sub"),
        (["--slug", "has space"], "slug"),
        (["--publisher", "pub_nope"], "pub_nope"),
    ],
)
def test_links_create_refuses_bad_input(home: Path, extra: list[str], mentions: str) -> None:
    ids = _ids(home)
    args = {"--campaign": ids["campaign"], "--publisher": ids["publisher"]}
    for index in range(0, len(extra), 2):
        args[extra[index]] = extra[index + 1]
    assert mentions in refused("links", "create", *[p for pair in args.items() for p in pair])


def test_links_create_slug_conflict(home: Path) -> None:
    ids = _ids(home)
    base = ("links", "create", "--campaign", ids["campaign"], "--publisher", ids["publisher"])
    ok_json(*base, "--slug", "twice")
    assert "slug" in refused(*base, "--slug", "twice")


def test_apikeys_create_list_revoke(home: Path) -> None:
    ok_json("init")
    made = ok_json("apikeys", "create", "--name", "ci", "--role", "analyst")
    assert made["role"] == "analyst" and made["secret"].startswith("pmk_")
    listed = ok_json("apikeys", "list")
    assert [k["name"] for k in listed] == ["owner key", "ci"]
    assert all("secret" not in k for k in listed)
    table = run("apikeys", "list")
    assert made["id"] in table.stdout and made["secret"] not in table.stdout
    revoked = ok_json("apikeys", "revoke", made["id"])
    assert revoked["id"] == made["id"] and revoked["revoked_at"]
    listed = {k["id"]: k for k in ok_json("apikeys", "list")}
    assert listed[made["id"]]["revoked_at"] is not None
    human = run("apikeys", "create", "--name", "people")
    assert human.exit_code == 0 and "pmk_" in human.stdout


def test_apikeys_refuse_bad_input(home: Path) -> None:
    ok_json("init")
    assert "role" in refused("apikeys", "create", "--role", "root")
    assert "advertiser_id" in refused("apikeys", "create", "--role", "advertiser")
    line = refused("apikeys", "create", "--role", "advertiser", "--advertiser", "adv_nope")
    assert "adv_nope" in line
    assert "key_nope" in refused("apikeys", "revoke", "key_nope")
    assert "ws_nope" in refused("apikeys", "list", "--workspace", "ws_nope")


def test_commands_before_init_say_what_to_do(home: Path) -> None:
    assert "perfmark init" in refused("campaigns", "list")
    assert "perfmark init" in refused("apikeys", "list")


def test_settings_table_and_json(home: Path) -> None:
    values = ok_json("settings")
    assert values["home"] == str(home)
    assert values["port"] == "8000"
    table = run("settings")
    assert table.exit_code == 0 and "max_body_bytes" in table.stdout
    masked = run("settings", "--json", env={"PERFMARK_SECRET_KEY": "s3cr3t-value-long-enough"})
    assert "s3cr3t" not in masked.stdout and json.loads(masked.stdout)["secret_key"] == "***"


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"PERFMARK_PORT": "abc"}, "port"),
        ({"PERFMARK_BASE_URL": "ftp://x"}, "base_url"),
        ({"PERFMARK_DATABASE_URL": "not a url"}, "database_url"),
        ({"PERFMARK_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, "database_url"),
    ],
)
def test_bad_settings_are_one_line(home: Path, env: dict[str, str], mentions: str) -> None:
    line = refused("init", env=env)
    assert mentions in line


def test_unwritable_home_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PERFMARK_HOME", str(blocker / "home"))
    assert "home" in refused("init")

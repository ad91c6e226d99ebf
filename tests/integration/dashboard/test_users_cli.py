"""`perfmark users create|list|set-password` against a real data directory."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from perfmark.cli.users import users_app
from perfmark.dashboard.auth import sign_in
from perfmark.domain.accounts import WorkspaceSpec
from perfmark.services.accounts import create_workspace
from perfmark.services.container import build_container
from perfmark.settings import load_settings


def test_a_user_created_on_the_command_line_can_sign_in(tmp_path: Path) -> None:
    env = {"PERFMARK_HOME": str(tmp_path / "home")}
    container = build_container(load_settings(env))
    create_workspace(container, WorkspaceSpec(name="CLI"), "owner@example.com")
    runner = CliRunner()
    result = runner.invoke(
        users_app,
        ["create", "--email", "Ana@Example.com", "--role", "analyst", "--password-stdin"],
        input="a long enough password\n",
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "ana@example.com (analyst)" in result.output
    assert "a long enough password" not in result.output
    _token, session = sign_in(container, "ana@example.com", "a long enough password")
    assert session.role.value == "analyst"
    listed = runner.invoke(users_app, ["list", "--json"], env=env)
    assert '"email": "ana@example.com"' in listed.output

    generated = runner.invoke(users_app, ["set-password", "--email", "ana@example.com"], env=env)
    assert generated.exit_code == 0, generated.output
    new_password = generated.output.strip().splitlines()[-1]
    assert len(new_password) == 24
    _token, again = sign_in(container, "ana@example.com", new_password)
    assert again.email == "ana@example.com"


def test_the_command_refuses_a_short_password_and_a_portal_user_without_scope(
    tmp_path: Path,
) -> None:
    env = {"PERFMARK_HOME": str(tmp_path / "home")}
    create_workspace(
        build_container(load_settings(env)), WorkspaceSpec(name="CLI"), "o@example.com"
    )
    runner = CliRunner()
    short = runner.invoke(
        users_app,
        ["create", "--email", "b@example.com", "--role", "admin", "--password-stdin"],
        input="short\n",
        env=env,
    )
    assert short.exit_code != 0
    assert "at least 10" in short.output
    unscoped = runner.invoke(
        users_app, ["create", "--email", "c@example.com", "--role", "advertiser"], env=env
    )
    assert unscoped.exit_code != 0
    assert "advertiser_id" in unscoped.output

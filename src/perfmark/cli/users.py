"""`perfmark users create|list|set-password`: the people who sign in to the dashboard."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import console, guarded, print_json, print_table
from perfmark.dashboard.users import create_user, list_team, set_password
from perfmark.domain.accounts import Role, UserSpec
from perfmark.errors import NotFoundError, ValidationError

__all__ = ["users_app"]

users_app = typer.Typer(help="Dashboard users: create, list, set a password.", no_args_is_help=True)

#: A generated password: 18 random bytes, about 144 bits, as 24 URL-safe characters.
GENERATED_PASSWORD_BYTES = 18
WorkspaceOption = Annotated[
    str | None, typer.Option("--workspace", help="Workspace id (default: the first one).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from standard input (else one is generated and printed once).",
    ),
]


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set, and whether it was generated (and so must be shown)."""
    if from_stdin:
        # One line; the newline that `echo` or a here-string adds is not part of it.
        return sys.stdin.readline().rstrip("\r\n"), False
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), True


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ValidationError(
            f"--role {value!r} is unknown; use one of {', '.join(Role)}", field="role"
        ) from None


@users_app.command("create")
@guarded
def create(
    email: Annotated[str, typer.Option(help="The email they sign in with.")],
    role: Annotated[str, typer.Option(help="owner, admin, analyst, advertiser or publisher.")],
    name: Annotated[
        str | None, typer.Option(help="Display name (default: from the email).")
    ] = None,
    advertiser: Annotated[str | None, typer.Option(help="Advertiser id (advertiser role).")] = None,
    publisher: Annotated[str | None, typer.Option(help="Publisher id (publisher role).")] = None,
    password_stdin: PasswordStdin = False,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a user who signs in to the dashboard with an email and password."""
    container = local_container()
    password, generated = _password(password_stdin)
    spec = UserSpec(
        email=email,
        name=name or email.split("@", 1)[0],
        role=_role(role),
        advertiser_id=advertiser,
        publisher_id=publisher,
    )
    record = create_user(container, local_owner(container, workspace), spec, password)
    if as_json:
        body = {"id": record.id, "email": record.spec.email, "role": record.spec.role.value}
        print_json({**body, "password": password} if generated else body)
        return
    console.print(f"User [bold]{record.id}[/] {record.spec.email} ({record.spec.role.value})")
    if generated:
        console.print("Password (shown once):", highlight=False)
        console.print(password, highlight=False, markup=False)


@users_app.command("list")
@guarded
def list_users(workspace: WorkspaceOption = None, as_json: JsonFlag = False) -> None:
    """List the workspace's users."""
    container = local_container()
    team = list_team(container, local_owner(container, workspace))
    rows = [
        (
            u.id,
            u.spec.email,
            u.spec.name,
            u.spec.role.value,
            u.spec.advertiser_id or u.spec.publisher_id or "",
        )
        for u in team
    ]
    if as_json:
        print_json(
            [dict(zip(("id", "email", "name", "role", "scope"), r, strict=True)) for r in rows]
        )
        return
    print_table("Users", ("id", "email", "name", "role", "advertiser/publisher"), rows)


@users_app.command("set-password")
@guarded
def set_user_password(
    email: Annotated[str, typer.Option(help="The user's email.")],
    password_stdin: PasswordStdin = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Set a user's password (their sessions end); prints a generated one unless --password-stdin."""
    container = local_container()
    owner = local_owner(container, workspace)
    wanted = email.strip().lower()
    user = next((u for u in list_team(container, owner) if u.spec.email == wanted), None)
    if user is None:
        raise NotFoundError(
            f"no user with email {email!r} in this workspace; see `perfmark users list`"
        )
    password, generated = _password(password_stdin)
    set_password(container, owner, user.id, password)
    console.print(f"Password of {user.spec.email} changed; their sessions have ended.")
    if generated:
        console.print(password, highlight=False, markup=False)

"""`perfmark apikeys create|list|revoke`."""

from __future__ import annotations

from typing import Annotated

import typer

from perfmark.cli.context import local_container, local_owner
from perfmark.cli.render import console, guarded, print_json, print_table
from perfmark.domain.accounts import Role
from perfmark.errors import ValidationError
from perfmark.services import accounts

__all__ = ["apikeys_app"]

apikeys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

WorkspaceOption = Annotated[
    str | None, typer.Option("--workspace", help="Workspace id (default: the first one).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@apikeys_app.command("create")
@guarded
def create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "cli key",
    role: Annotated[
        str, typer.Option(help="owner, admin, analyst, advertiser or publisher.")
    ] = "admin",
    advertiser: Annotated[str | None, typer.Option(help="Advertiser id (advertiser role).")] = None,
    publisher: Annotated[str | None, typer.Option(help="Publisher id (publisher role).")] = None,
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; its secret is printed once."""
    try:
        parsed_role = Role(role)
    except ValueError:
        raise ValidationError(
            f"--role {role!r} is unknown; use one of {', '.join(Role)}", field="role"
        ) from None
    container = local_container()
    created = accounts.create_api_key(
        container,
        local_owner(container, workspace),
        name,
        parsed_role,
        advertiser_id=advertiser,
        publisher_id=publisher,
    )
    if as_json:
        print_json({"id": created.info.id, "role": parsed_role.value, "secret": created.secret})
        return
    console.print(f"API key [bold]{created.info.id}[/] ({parsed_role.value}), shown once:")
    console.print(created.secret, highlight=False)


@apikeys_app.command("list")
@guarded
def list_keys(workspace: WorkspaceOption = None, as_json: JsonFlag = False) -> None:
    """List keys (never their secrets)."""
    container = local_container()
    keys = accounts.list_api_keys(container, local_owner(container, workspace))
    if as_json:
        print_json(
            [
                {
                    "id": k.id,
                    "name": k.name,
                    "role": k.role.value,
                    "preview": k.preview,
                    "revoked_at": k.revoked_at,
                }
                for k in keys
            ]
        )
        return
    print_table(
        "API keys",
        ("id", "name", "role", "starts with", "created", "last used", "revoked"),
        [
            (k.id, k.name, k.role.value, k.preview, k.created_at, k.last_used_at, k.revoked_at)
            for k in keys
        ],
    )


@apikeys_app.command("revoke")
@guarded
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    workspace: WorkspaceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key; it stops working at once."""
    container = local_container()
    info = accounts.revoke_api_key(container, local_owner(container, workspace), key_id)
    if as_json:
        print_json({"id": info.id, "revoked_at": info.revoked_at})
    else:
        console.print(f"API key {info.id} revoked at {info.revoked_at}.")

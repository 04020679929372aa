"""``surge user create|list``: the people who sign in to the console.

The password is read from standard input (one line) or asked for at a terminal, never from
the command line, where other users of the machine and the shell history would see it.
"""

from __future__ import annotations

import asyncio
import json
import sys

import click

from surge.audit import Actor
from surge.config import get_settings
from surge.db.pool import connect
from surge.db.runtime import database
from surge.errors import NotFound
from surge.orgs import store as org_store
from surge.users import service
from surge.users.store import User


@click.group("user")
def user_group() -> None:
    """Manage console users (staff who sign in to /console/)."""


def _password() -> str:
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


@user_group.command("create")
@click.option("--org", "organization_id", type=int, required=True, help="Organisation id.")
@click.option("--email", required=True, help="The address they sign in with.")
@click.option("--name", default="", help="Their name (default: the address's local part).")
@click.option(
    "--role",
    type=click.Choice(service.ROLES),
    default="viewer",
    show_default=True,
    help="viewer reads; editor changes contacts, lists, messages; admin also keys, "
    "webhooks, refunds; owner also users.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def create(organization_id: int, email: str, name: str, role: str, as_json: bool) -> None:
    """Create a console user; the password comes from stdin or a prompt, never argv."""
    password = _password()

    async def run(url: str) -> User:
        conn = await connect(url)
        try:
            if not await org_store.organization_exists(conn, organization_id):
                raise NotFound(f"no organisation {organization_id}", "org")
            return await service.create_user(
                conn,
                Actor.cli(organization_id),
                email=email,
                name=name,
                role=role,
                password=password,
            )
        finally:
            await conn.close()

    with database(get_settings()) as url:
        user = asyncio.run(run(url))
    if as_json:
        click.echo(json.dumps({"id": user.id, "email": user.email, "role": user.role}))
        return
    click.echo(
        f"user {user.id} ({user.email}, {user.role}) created in organisation {organization_id}"
    )


@user_group.command("list")
@click.option("--org", "organization_id", type=int, required=True, help="Organisation id.")
def list_users(organization_id: int) -> None:
    """List an organisation's console users: id, email, name, role, 2FA, state."""

    async def run(url: str) -> list[User]:
        conn = await connect(url)
        try:
            return await service.list_users(conn, organization_id)
        finally:
            await conn.close()

    with database(get_settings()) as url:
        for u in asyncio.run(run(url)):
            state = "disabled" if u.disabled else "active"
            totp = "2fa" if u.totp_enabled else "-"
            click.echo(f"{u.id}\t{u.email}\t{u.name}\t{u.role}\t{totp}\t{state}")

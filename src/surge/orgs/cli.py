"""``surge org create|list``."""

from __future__ import annotations

import asyncio
import json

import click

from surge.config import get_settings
from surge.db.pool import connect
from surge.db.runtime import database
from surge.orgs import service, store


@click.group("org")
def org_group() -> None:
    """Manage organisations (tenants)."""


@org_group.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def create(name: str, as_json: bool) -> None:
    """Create an organisation and print its keys. The keys are shown this once only."""

    async def run(url: str) -> service.NewOrganization:
        conn = await connect(url)
        try:
            return await service.create_organization(conn, name)
        finally:
            await conn.close()

    with database(get_settings()) as url:
        org = asyncio.run(run(url))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": org.id,
                    "name": org.name,
                    "secret_key": org.secret_key,
                    "publishable_key": org.publishable_key,
                }
            )
        )
        return
    click.echo(f"organization {org.id} ({org.name}) created")
    click.echo(f"secret key:      {org.secret_key}")
    click.echo(f"publishable key: {org.publishable_key}")
    click.echo("Store these now: they cannot be shown again.")


@org_group.command("list")
def list_orgs() -> None:
    """List organisations."""

    async def run(url: str) -> list[tuple[int, str]]:
        conn = await connect(url)
        try:
            return await store.list_organizations(conn)
        finally:
            await conn.close()

    with database(get_settings()) as url:
        for org_id, name in asyncio.run(run(url)):
            click.echo(f"{org_id}\t{name}")

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
@click.option(
    "--slug", default=None, help="Its pages' address, /g/SLUG/… (default: from the name)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def create(name: str, slug: str | None, as_json: bool) -> None:
    """Create an organisation and print its keys. The keys are shown this once only."""

    async def run(url: str) -> service.NewOrganization:
        conn = await connect(url)
        try:
            return await service.create_organization(conn, name, slug)
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
                    "slug": org.slug,
                }
            )
        )
        return
    click.echo(f"organization {org.id} ({org.name}) created, pages at /g/{org.slug}/")
    click.echo(f"secret key:      {org.secret_key}")
    click.echo(f"publishable key: {org.publishable_key}")
    click.echo("Store these now: they cannot be shown again.")


@org_group.command("slug")
@click.argument("organization_id", type=click.IntRange(min=1))
@click.argument("slug")
def set_slug(organization_id: int, slug: str) -> None:
    """Change an organisation's page address to /g/SLUG/… (the old one stops working)."""

    async def run(url: str) -> None:
        conn = await connect(url)
        try:
            await service.set_slug(conn, organization_id, slug)
        finally:
            await conn.close()

    with database(get_settings()) as url:
        asyncio.run(run(url))
    click.echo(f"organization {organization_id} pages at /g/{slug}/")


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

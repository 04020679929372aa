"""``surge suppressions add|list|remove``: an organisation's suppression list from a shell."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from surge.config import get_settings
from surge.db.pool import connect
from surge.db.runtime import database
from surge.errors import NotFound
from surge.orgs import store as orgs
from surge.suppressions import service
from surge.suppressions.schemas import (
    Added,
    GivenReason,
    Suppression,
    SuppressionBatch,
    SuppressionIn,
)
from surge.suppressions.service import Conn

T = TypeVar("T")


def _run(org: int, work: Callable[[Conn], Awaitable[T]]) -> T:
    async def run(url: str) -> T:
        conn = await connect(url)
        try:
            if not await orgs.organization_exists(conn, org):
                raise NotFound(f"organization {org} not found")
            return await work(conn)
        finally:
            await conn.close()

    with database(get_settings()) as url:
        return asyncio.run(run(url))


ORG = click.option(
    "--org", "org", type=click.IntRange(min=1), required=True, help="Organisation id."
)


@click.group("suppressions")
def suppressions_group() -> None:
    """Addresses an organisation's campaign mail is never sent to."""


@suppressions_group.command("add")
@click.argument("emails", nargs=-1, required=True)
@ORG
@click.option("--imported", is_flag=True, help="Reason 'imported' (a previous provider's list).")
@click.option("--detail", default=None, help="A note kept with each address.")
def add_command(emails: tuple[str, ...], org: int, imported: bool, detail: str | None) -> None:
    """Suppress EMAILS (up to 1,000); those already suppressed keep their reason."""
    reason: GivenReason = "imported" if imported else "manual"
    body = SuppressionBatch([SuppressionIn(e, reason, detail) for e in emails])

    async def work(conn: Conn) -> Added:
        return await service.add(conn, org, body)

    added = _run(org, work)
    click.echo(f"{added.added} suppressed, {added.existing} already were")


@suppressions_group.command("list")
@ORG
@click.option("--json", "as_json", is_flag=True, help="One JSON object per address.")
def list_command(org: int, as_json: bool) -> None:
    """Every suppressed address of the organisation, oldest first."""

    async def work(conn: Conn) -> list[Suppression]:
        found: list[Suppression] = []
        after: str | None = None
        while True:
            page = await service.page(conn, org, after=after, limit=1000, email=None)
            found += page.data
            if page.next is None:
                return found
            after = page.next

    for s in _run(org, work):
        if as_json:
            data = {"email": s.email, "reason": s.reason, "detail": s.detail}
            click.echo(json.dumps(data | {"created_at": s.created_at.isoformat()}))
        else:
            click.echo(f"{s.email}\t{s.reason}\t{s.detail or ''}")


@suppressions_group.command("remove")
@click.argument("email")
@ORG
def remove_command(email: str, org: int) -> None:
    """Take EMAIL off the list: campaign mail reaches it again."""

    async def work(conn: Conn) -> None:
        await service.remove(conn, org, email)

    _run(org, work)
    click.echo(f"{email} removed from the suppression list")

"""``surge dkim generate|activate|retire|list``: the DKIM keys of the sending domains."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from surge.config import get_settings
from surge.db.pool import connect
from surge.db.runtime import database
from surge.delivery import dkim, dkim_keys
from surge.delivery.dkim_keys import Conn, Key

T = TypeVar("T")

ALGORITHMS: dict[str, tuple[dkim.Algorithm, ...]] = {
    "rsa": ("rsa-sha256",),
    "ed25519": ("ed25519-sha256",),
    "both": ("rsa-sha256", "ed25519-sha256"),
}


def _run(work: Callable[[Conn], Awaitable[T]]) -> T:
    async def run(url: str) -> T:
        conn = await connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    with database(get_settings()) as url:
        return asyncio.run(run(url))


def _as_dict(key: Key) -> dict[str, Any]:
    return {
        "domain": key.domain,
        "selector": key.selector,
        "algorithm": key.algorithm,
        "state": key.state,
        "dns_record": key.dns_record,
        "created_at": key.created_at.isoformat(),
    }


@click.group("dkim")
def dkim_group() -> None:
    """DKIM keys of the domains mail is sent from (the From address's domain)."""


@dkim_group.command("generate")
@click.argument("domain")
@click.option(
    "--algorithm",
    type=click.Choice(sorted(ALGORITHMS)),
    default="both",
    show_default=True,
    help="rsa (RSA-2048, every verifier), ed25519, or one of each (signed side by side).",
)
@click.option("--selector", default=None, help="DNS selector (default: s<YYYYMM>r|e).")
@click.option(
    "--activate",
    is_flag=True,
    help="Sign with it at once (only once its DNS record is published; else use activate).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON lines.")
def generate_command(
    domain: str, algorithm: str, selector: str | None, activate: bool, as_json: bool
) -> None:
    """Create keys for DOMAIN and print the DNS TXT records to publish."""
    algorithms = ALGORITHMS[algorithm]
    if selector is not None and len(algorithms) > 1:
        raise click.UsageError("--selector names one key: give --algorithm rsa or ed25519 too")

    async def work(conn: Conn) -> list[Key]:
        keys = []
        for alg in algorithms:
            key = await dkim_keys.generate(conn, domain, alg, selector)
            if activate:
                key = await dkim_keys.activate(conn, key.domain, key.selector)
            keys.append(key)
        return keys

    keys = _run(work)
    for key in keys:
        if as_json:
            click.echo(json.dumps(_as_dict(key)))
        else:
            click.echo(f"; {key.algorithm} key {key.selector!r} for {key.domain} ({key.state})")
            click.echo(key.dns_record)
    if not activate and not as_json:
        first = keys[0]
        click.echo(
            f"; publish the record(s), then: surge dkim activate {first.domain} <selector>",
            err=True,
        )


@dkim_group.command("activate")
@click.argument("domain")
@click.argument("selector")
def activate_command(domain: str, selector: str) -> None:
    """Sign DOMAIN's mail with this key; the active key of its algorithm is retired."""
    key = _run(lambda conn: dkim_keys.activate(conn, domain, selector))
    click.echo(f"{key.domain} signs with {key.selector!r} ({key.algorithm})")


@dkim_group.command("retire")
@click.argument("domain")
@click.argument("selector")
def retire_command(domain: str, selector: str) -> None:
    """Stop signing with this key. Keep its DNS record a few days for mail in flight."""
    key = _run(lambda conn: dkim_keys.retire(conn, domain, selector))
    click.echo(f"{key.domain}: {key.selector!r} retired")


@dkim_group.command("list")
@click.argument("domain", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON lines.")
def list_command(domain: str | None, as_json: bool) -> None:
    """The keys of every domain (or of DOMAIN), with their state."""
    for key in _run(lambda conn: dkim_keys.list_keys(conn, domain)):
        if as_json:
            click.echo(json.dumps(_as_dict(key)))
        else:
            click.echo(f"{key.domain}\t{key.selector}\t{key.algorithm}\t{key.state}")

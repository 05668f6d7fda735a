"""`wizd token`: the API's bearer tokens. Thin layers over Queue.create_token and friends."""

from __future__ import annotations

import click
from rich.markup import escape

from wizd.cli.options import json_option
from wizd.cli.options import store_options as store
from wizd.cli.render import ago, print_json, show, table
from wizd.cli.session import with_queue
from wizd.errors import InvalidJob
from wizd.model import ROLES, Token
from wizd.queue import Queue
from wizd.settings import Settings

SHOWN_ONCE = "this secret is shown once and will not be shown again: keep it now"


def scope(token: Token) -> str:
    return "every queue" if token.queues is None else ", ".join(token.queues)


@click.group(help="API tokens (bearer tokens of the HTTP API): create, list, revoke.")
def token() -> None:
    pass


@token.command(
    short_help="Make a token and print its secret, once.",
    help="Make a token and print its secret, once: the database keeps only its SHA-256. "
    "Roles, each including the ones before it: read, enqueue (and wait, signal, cancel), "
    "operate (retry, kill, delete, pause, defaults, limits, schedules), admin (tokens, "
    "queue removal, cleanup).",
)
@store
@json_option
@click.option("--role", metavar="ROLE", help=f"One of {', '.join(ROLES)} (required).")
@click.option(
    "--queue", "queues", multiple=True, help="A queue it may touch (repeatable); default: every."
)
@click.option("--name", help="A label for people: who or what uses it.")
def create(role: str | None, queues: tuple[str, ...], name: str | None, as_json: bool) -> None:
    if role is None:
        raise InvalidJob("role", f"give --role: one of {', '.join(ROLES)}")

    async def work(q: Queue, s: Settings) -> tuple[Token, str]:
        return await q.create_token(role, queues or None, name)

    made, secret = with_queue(work)
    if as_json:
        print_json({"token": made.to_dict(), "secret": secret})
    else:
        click.echo(secret)
    click.echo(f"token {made.id} ({made.role}, {scope(made)}) created; {SHOWN_ONCE}", err=True)


@token.command("list", help="Every token: id, name, role, queues, when made and revoked.")
@store
@json_option
def list_tokens(as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> list[Token]:
        return await q.tokens()

    found = with_queue(work, read_only=True)
    if as_json:
        print_json([t.to_dict() for t in found])
        return
    if not found:
        show("[dim]no tokens[/]")
        return
    grid = table("id", "name", "role", "queues", "created", "revoked")
    for t in found:
        cells = (t.id, t.name or "-", t.role.value, scope(t))
        grid.add_row(*map(escape, cells), ago(t.created_at), ago(t.revoked_at))
    show(grid)


@token.command(
    short_help="Revoke a token: it authenticates no more.",
    help="Revoke a token by its id: it authenticates no more (at once, on every host).",
)
@store
@json_option
@click.argument("token_id", metavar="ID")
def revoke(token_id: str, as_json: bool) -> None:
    async def work(q: Queue, s: Settings) -> Token:
        return await q.revoke_token(token_id)

    revoked = with_queue(work)
    if as_json:
        print_json(revoked.to_dict())
    else:
        click.echo(f"token {revoked.id} revoked")


COMMANDS = (token,)

"""``phloem users`` and ``phloem tokens``: the server's accounts, managed from its machine."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Annotated

import typer

from phloem.cli.common import application, errors, fail, print_json

users_app = typer.Typer(help="The server's users and their roles.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for scripts and the remote CLI.", no_args_is_help=True)

JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        text = sys.stdin.readline().rstrip("\r\n")
        if not text:
            fail("--password-stdin: standard input gave no password (one line expected)")
        return text
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: pass it on standard input with --password-stdin")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option("--role", "-r", help="viewer, operator or admin.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Give an existing user this role and password.")
    ] = False,
) -> None:
    """Add user NAME with ROLE (the password is asked for, or read with --password-stdin)."""
    from phloem.accounts import manage
    from phloem.accounts.roles import Role

    with errors():
        parsed = Role.parse(role)  # a bad role fails before the password is asked for
        user = manage.add_user(
            application(), name, parsed, _password(password_stdin), replace=replace
        )
    typer.echo(f"user {user.name}: {user.role.value}")


@users_app.command("list")
def users_list(as_json: JsonOut = False) -> None:
    """Users and their roles."""
    from phloem.accounts import manage

    with errors():
        found = manage.users(application())
    if as_json:
        print_json([{"name": u.name, "role": u.role.value, "created_at": u.created_at,
                     "disabled": u.disabled} for u in found])
        return
    for u in found:
        off = "  (disabled)" if u.disabled else ""
        typer.echo(f"{u.name:30} {u.role.value:9} since {_when(u.created_at)}{off}")


@users_app.command("set-role")
def users_set_role(name: str, role: str) -> None:
    """Give user NAME the role ROLE (viewer, operator or admin); its password stays."""
    from phloem.accounts import manage

    with errors():
        user = manage.update_user(application(), name, role=role)
    typer.echo(f"user {user.name}: {user.role.value}")


@users_app.command("disable")
def users_disable(name: str) -> None:
    """Disable user NAME: its sessions end, its tokens are refused, it cannot log in."""
    from phloem.accounts import manage

    with errors():
        manage.update_user(application(), name, disabled=True)
    typer.echo(f"disabled user {name}")


@users_app.command("enable")
def users_enable(name: str) -> None:
    """Enable user NAME again (its tokens work again, unless revoked or expired)."""
    from phloem.accounts import manage

    with errors():
        manage.update_user(application(), name, disabled=False)
    typer.echo(f"enabled user {name}")


@users_app.command("remove")
def users_remove(name: str) -> None:
    """Remove user NAME with its tokens and sessions."""
    from phloem.accounts import manage

    with errors():
        manage.remove_user(application(), name)
    typer.echo(f"removed user {name}")


@tokens_app.command("create")
def tokens_create(
    name: str,
    user: Annotated[str, typer.Option("--user", "-u", help="Whose token (its role).")] = "admin",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime: 30d, 12h, 90m, 2w (default: never).")
    ] = None,
) -> None:
    """Create token NAME for USER and print it: this is the only time it is shown."""
    from phloem.accounts import manage

    with errors():
        lifetime = manage.parse_expiry(expires)
        token, rec = manage.create_token(application(), name, user, lifetime)
    typer.echo(token)
    until = f"until {_when(rec.expires_at)}" if rec.expires_at else "with no expiry"
    typer.echo(
        f"token {name} for {user}, {until}; it is shown once: keep it now (PHLOEM_TOKEN)",
        err=True,
    )


@tokens_app.command("revoke")
def tokens_revoke(name: str) -> None:
    """Revoke token NAME at once."""
    from phloem.accounts import manage

    with errors():
        manage.revoke_token(application(), name)
    typer.echo(f"revoked token {name}")


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    as_json: JsonOut = False,
) -> None:
    """Tokens (never the secrets): whose, when made, until when, revoked."""
    import time

    from phloem.accounts import manage

    with errors():
        found = manage.tokens(application(), user)
    now = time.time()

    def state(expires_at: float | None, revoked_at: float | None) -> str:
        if revoked_at is not None:
            return "revoked"
        if expires_at is not None and expires_at <= now:
            return "expired"
        return "valid"

    if as_json:
        print_json([
            {"name": t.name, "user": t.user, "created_at": t.created_at,
             "expires_at": t.expires_at, "revoked_at": t.revoked_at,
             "state": state(t.expires_at, t.revoked_at)}
            for t in found
        ])
        return
    for t in found:
        typer.echo(
            f"{t.name:24} {t.user:20} {state(t.expires_at, t.revoked_at):8} "
            f"made {_when(t.created_at)}  expires {_when(t.expires_at)}"
        )

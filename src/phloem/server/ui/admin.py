"""What the admin page shows: users and tokens, pools, variables and connections.

Everything comes through the API's own listings (``routes.accounts``, ``routes.pools``, ...),
so the page shows exactly what the API shows: a token's state but never its secret (that is in
the one answer that creates it), a connection's URI with its secrets masked and whether a
password is set, never the password. Changes are made by the page's forms through the REST
API, whose rules (admins only, the CSRF token of the session) decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phloem.accounts.roles import Role
from phloem.app import Phloem


@dataclass(frozen=True, slots=True)
class AdminPage:
    users: list[Any]  # routes.accounts.UserOut
    tokens: list[Any]  # routes.accounts.TokenOut
    roles: list[str]
    pools: list[Any]  # routes.pools.PoolOut
    variables: list[Any]  # routes.variables.VariableOut
    connections: list[Any]  # routes.connections.ConnectionOut


#: a token's lifetimes offered by the form (the API takes any ``30d``, ``12h``, ...)
EXPIRIES = (
    ("30d", "30 days"),
    ("7d", "7 days"),
    ("1d", "1 day"),
    ("90d", "90 days"),
    ("365d", "a year"),
    ("never", "never"),
)


def admin_page(ph: Phloem) -> AdminPage:
    from phloem.server.routes.accounts import list_tokens, list_users
    from phloem.server.routes.connections import list_connections
    from phloem.server.routes.pools import list_pools
    from phloem.server.routes.variables import list_variables

    return AdminPage(
        users=list_users(ph),
        tokens=sorted(list_tokens(ph), key=lambda t: (t.state != "valid", t.user, t.name)),
        roles=[r.value for r in Role],
        pools=list_pools(ph),
        variables=list_variables(ph),
        connections=list_connections(ph),
    )


__all__ = ["EXPIRIES", "AdminPage", "admin_page"]

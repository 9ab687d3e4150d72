"""What the admin page shows: users and tokens, pools, variables and connections.

Connections come through the API's own listing (``routes.connections``), so the page shows
exactly what the API shows: the URI with its secrets masked and whether a password is set,
never the password. Changes are made by the page's forms through the REST API (admin only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phloem.app import Phloem
from phloem.store.accounts import TokenRecord, UserRecord


@dataclass(frozen=True, slots=True)
class AdminPage:
    users: list[UserRecord]
    tokens: list[TokenRecord]
    pools: list[Any]  # routes.pools.PoolOut
    variables: list[Any]  # routes.variables.VariableOut
    connections: list[Any]  # routes.connections.ConnectionOut


def admin_page(ph: Phloem) -> AdminPage:
    from phloem.server.routes.connections import list_connections
    from phloem.server.routes.pools import list_pools
    from phloem.server.routes.variables import list_variables

    accounts = ph.store.accounts
    return AdminPage(
        users=sorted(accounts.users(), key=lambda u: u.name),
        tokens=sorted(accounts.tokens(), key=lambda t: (t.user, t.name)),
        pools=list_pools(ph),
        variables=list_variables(ph),
        connections=list_connections(ph),
    )


__all__ = ["AdminPage", "admin_page"]

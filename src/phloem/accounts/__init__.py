"""Accounts of the server: users with a role, API tokens and browser sessions.

Roles are ordered: a viewer reads (logs masked as everywhere), an operator also steers runs
(trigger, retry, cancel, pause, backfill), an admin also manages users, tokens, connections,
variables and pools. Passwords are hashed with argon2; see ``phloem.accounts.secrets`` for
tokens and sessions.
"""

from phloem.accounts.roles import Role

__all__ = ["Role"]

"""The three roles and their order: each role may do all that the ones below it may."""

from __future__ import annotations

from phloem.errors import AccountError
from phloem.states import Text


class Role(Text):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        """Whether someone of this role may do what ``needed`` is required for."""
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise AccountError(
                f"{text!r} is not a role: use one of {', '.join(r.value for r in cls)}"
            ) from None


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}

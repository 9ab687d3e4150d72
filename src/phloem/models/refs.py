"""How a model version is named: ``fraud`` (the latest), ``fraud:3`` (a version),
``fraud@production`` (an alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from phloem.errors import PhloemError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,249}")


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference: exactly one of ``version`` and ``alias``, or neither (latest)."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise PhloemError(
            f"model name {name!r} is not valid: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit (at most 250 characters)"
        )
    return name


def check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise PhloemError(
            f"alias {alias!r} is not valid: use letters, digits, '_' and '-', starting with a "
            "letter (such as 'production' or 'champion')"
        )
    return alias


def check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PhloemError(f"a model version is a whole number from 1, not {version!r}")
    return version


def parse(text: object) -> ModelRef:
    """``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``; a clear error for anything else."""
    if isinstance(text, ModelRef):
        return text
    if not isinstance(text, str):
        raise PhloemError(
            f"a model reference is text such as 'fraud', 'fraud:3' or 'fraud@production', "
            f"not {type(text).__name__}"
        )
    if "@" in text:
        name, _, alias = text.partition("@")
        return ModelRef(check_name(name), alias=check_alias(alias))
    if ":" in text:
        name, _, number = text.partition(":")
        if not number.isascii() or not number.isdigit():
            raise PhloemError(
                f"model reference {text!r}: the version after ':' must be a number, as in "
                f"'{name}:3' (for an alias write '{name}@{number}')"
            )
        return ModelRef(check_name(name), version=check_version(int(number)))
    return ModelRef(check_name(text))


__all__ = ["ModelRef", "check_alias", "check_name", "check_version", "parse"]

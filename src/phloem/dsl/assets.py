"""Assets: named data a task updates, and pipelines scheduled on their updates."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from phloem.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Asset:
    """A piece of data known by name (a table, a feature set, a model), e.g. Asset("features").

    A task declares ``outputs=[Asset("features")]``; a pipeline with
    ``schedule=[Asset("features"), Asset("labels")]`` runs once all of them were updated since
    its last run.
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DefinitionError(f"an Asset needs a non-empty name, got {self.name!r}")


def asset_names(values: Iterable[object], where: str) -> tuple[str, ...]:
    names = []
    for v in values:
        if isinstance(v, Asset):
            names.append(v.name)
        elif isinstance(v, str) and v.strip():
            names.append(v)
        else:
            raise DefinitionError(f"{where}: expected Asset('name'), got {v!r}")
    return tuple(dict.fromkeys(names))


def is_asset_schedule(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(v, Asset) for v in value)
    )

"""What the model pages show: the registered models, and one model's versions (metrics and
the run that made each, for its lineage), its aliases with their history, and two versions
compared side by side."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phloem.errors import PhloemError
from phloem.store.models import AliasMove, ModelSummary, ModelVersion
from phloem.store.port import Store


@dataclass(frozen=True, slots=True)
class ModelPage:
    name: str
    versions: list[ModelVersion]  # newest first
    aliases: dict[str, int]
    by_version: dict[int, list[str]]  # version -> its aliases
    history: list[AliasMove]  # newest first
    metric_keys: list[str]
    compared: tuple[ModelVersion, ModelVersion] | None
    compare_rows: list[tuple[str, str, Any, Any, bool]]  # kind, key, a, b, differ


def models(store: Store) -> list[ModelSummary]:
    return sorted(store.models.names(), key=lambda m: m.name)


def model_page(store: Store, name: str, a: int | None, b: int | None) -> ModelPage:
    m = store.models
    versions = m.versions(name)
    if not versions:
        m.latest(name)  # raises ModelNotFound naming the models there are
    aliases = m.aliases(name)
    by_version: dict[int, list[str]] = {}
    for alias, v in sorted(aliases.items()):
        by_version.setdefault(v, []).append(alias)
    keys = sorted({k for v in versions for k in v.metrics})
    compared = None
    rows: list[tuple[str, str, Any, Any, bool]] = []
    if a is not None or b is not None:
        if a is None or b is None:
            raise PhloemError("pick two versions to compare (a and b)")
        known = {v.version: v for v in versions}
        for n in (a, b):
            if n not in known:
                raise PhloemError(
                    f"model '{name}' has no usable version {n} (it has "
                    f"{', '.join(str(v) for v in sorted(known))})"
                )
        va, vb = known[a], known[b]
        compared = (va, vb)
        for kind, da, db in (
            ("metric", va.metrics, vb.metrics),
            ("param", va.params, vb.params),
            ("tag", va.tags, vb.tags),
        ):
            for k in sorted(set(da) | set(db)):
                x, y = da.get(k), db.get(k)
                rows.append((kind, k, x, y, x != y))
    return ModelPage(
        name,
        list(reversed(versions)),
        aliases,
        by_version,
        list(reversed(m.alias_history(name))),
        keys,
        compared,
        rows,
    )


__all__ = ["ModelPage", "model_page", "models"]

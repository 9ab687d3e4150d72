"""``/lineage``: what made an artifact, a task instance's output or a model version
(upstream), or what used it (downstream), as the graph ``phloem lineage --json`` prints.
The target goes in the query as the CLI takes it: a hash (or unique prefix), ``RUN TASK``
(space-separated) or ``name:3`` / ``name@alias``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.errors import LineageError
from phloem.lineage import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_NODES,
    SERVED_MAX_DEPTH,
    SERVED_MAX_NODES,
    ArtifactTarget,
    ModelResolver,
    Target,
    lineage,
    resolve_target,
    target_parsers,
)
from phloem.server.auth import application, require

router = APIRouter(prefix="/lineage", tags=["lineage"])
Viewer = Depends(require(Role.VIEWER))


@router.get("", dependencies=[Viewer])
def get_lineage(
    target: Annotated[
        str,
        Query(
            min_length=1,
            max_length=300,
            description="An artifact hash (or a unique prefix), `RUN TASK`, or a model "
            "version (`name:3`, `name@alias`).",
        ),
    ],
    ph: Phloem = Depends(application),
    direction: Literal["upstream", "downstream", "both"] = "upstream",
    map_index: Annotated[int | None, Query(ge=0, description="With RUN TASK.")] = None,
    depth: Annotated[
        int, Query(ge=1, description=f"Task hops at most (clamped to {SERVED_MAX_DEPTH}).")
    ] = DEFAULT_MAX_DEPTH,
    max_nodes: Annotated[
        int, Query(ge=1, description=f"Nodes at most (clamped to {SERVED_MAX_NODES}).")
    ] = DEFAULT_MAX_NODES,
) -> dict[str, Any]:
    """The lineage graph of ``target``: nodes (artifacts, task instances), data-flow edges,
    and why the walk stopped early if it did."""
    words = target.split()
    if not 1 <= len(words) <= 2:
        raise LineageError(
            f"target is one or two words (a hash, or RUN TASK), not {len(words)}",
            target=target[:100],
        )
    parsers = target_parsers(resolve_model=_models(ph))
    found = resolve_target(ph.store, words, map_index, parsers)
    graph = lineage(
        ph.store,
        found,
        direction,
        max_depth=min(depth, SERVED_MAX_DEPTH),
        max_nodes=min(max_nodes, SERVED_MAX_NODES),
    )
    return graph.to_json()


def _models(ph: Phloem) -> ModelResolver:
    """Model versions resolved by the model registry to the model's artifact."""

    def resolve(name: str, version: int | None, alias: str | None) -> Target:
        from phloem.models.registry import Registry

        ref = f"{name}:{version}" if version is not None else f"{name}@{alias}"
        found = Registry(ph.store, ph.artifacts, "phloem server").resolve(ref)
        return ArtifactTarget(found.artifact.digest)

    return resolve


__all__ = ["router"]

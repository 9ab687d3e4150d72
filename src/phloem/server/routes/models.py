"""``/models``: the model registry: names, versions with their metrics and origin, aliases
and their history; operators promote (move an alias) and roll back, recorded with their user
name as ``phloem.models.set_alias`` / ``rollback`` record theirs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import Field

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.server.auth import Principal, application, require
from phloem.server.models import Body, Out
from phloem.store.models import AliasMove, ModelVersion

router = APIRouter(prefix="/models", tags=["models"])

Name = Annotated[str, Path(max_length=250)]


class ModelBrief(Out):
    name: str
    latest: int | None
    versions: int
    aliases: dict[str, int]
    updated_at: float


class VersionOut(Out):
    version: int
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, Any]
    description: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None
    registered_by: str
    artifact: str  # its digest

    @classmethod
    def of(cls, v: ModelVersion) -> VersionOut:
        return cls(
            version=v.version, metrics=v.metrics, params=v.params, tags=v.tags,
            description=v.description, run_id=v.run_id, task_id=v.task_id,
            map_index=v.map_index, registered_by=v.registered_by, artifact=v.artifact.digest,
        )


class MoveOut(Out):
    alias: str
    version: int
    previous: int | None
    at: float
    who: str
    reason: str | None
    kind: str

    @classmethod
    def of(cls, m: AliasMove) -> MoveOut:
        return cls(alias=m.alias, version=m.version, previous=m.previous, at=m.at, who=m.who,
                   reason=m.reason, kind=m.kind)


class ModelOut(Out):
    name: str
    versions: list[VersionOut]
    aliases: dict[str, int]
    history: list[MoveOut]


class Promote(Body):
    version: int = Field(ge=1)
    reason: str | None = Field(default=None, max_length=1000)


class Rollback(Body):
    reason: str | None = Field(default=None, max_length=1000)


@router.get("", dependencies=[Depends(require(Role.VIEWER))])
def list_models(ph: Phloem = Depends(application)) -> list[ModelBrief]:
    """Every registered model: its newest version, how many it has, its aliases."""
    return [
        ModelBrief(name=m.name, latest=m.latest, versions=m.versions, aliases=m.aliases,
                   updated_at=m.updated_at)
        for m in ph.store.models.names()
    ]


@router.get("/{name}", dependencies=[Depends(require(Role.VIEWER))])
def get_model(name: Name, ph: Phloem = Depends(application)) -> ModelOut:
    """A model's usable versions (oldest first), its aliases and every move of them."""
    models = ph.store.models
    versions = models.versions(name)
    if not versions:
        models.latest(name)  # raises ModelNotFound, naming the models there are
    return ModelOut(
        name=name,
        versions=[VersionOut.of(v) for v in versions],
        aliases=models.aliases(name),
        history=[MoveOut.of(m) for m in models.alias_history(name)],
    )


@router.post("/{name}/aliases/{alias}")
def promote(
    name: Name,
    alias: Annotated[str, Path(max_length=120)],
    body: Promote,
    who: Principal = Depends(require(Role.OPERATOR)),
    ph: Phloem = Depends(application),
) -> MoveOut:
    """Point ``alias`` at a version (promote it), recorded in the alias's history."""
    from phloem.models import registry

    with registry(ph, who=who.user) as r:
        move = r.set_alias(name, body.version, alias, reason=body.reason)
    assert move is not None  # outside a task the move happens at once
    return MoveOut.of(move)


@router.post("/{name}/aliases/{alias}/rollback")
def rollback(
    name: Name,
    alias: Annotated[str, Path(max_length=120)],
    body: Rollback,
    who: Principal = Depends(require(Role.OPERATOR)),
    ph: Phloem = Depends(application),
) -> MoveOut:
    """Move ``alias`` back to the version it pointed at before."""
    from phloem.models import registry

    with registry(ph, who=who.user) as r:
        return MoveOut.of(r.rollback(name, alias, reason=body.reason))

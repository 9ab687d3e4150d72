"""``/pipelines``: the pipelines schedulers found, their graphs, pause/unpause and trigger."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from phloem.accounts.roles import Role
from phloem.app import Phloem
from phloem.server.auth import application, require
from phloem.server.models import Out

router = APIRouter(prefix="/pipelines", tags=["pipelines"])


class PipelineSummary(Out):
    name: str
    file: str
    schedule: str | None
    timezone: str
    paused: bool
    active: bool
    code_hash: str
    owner: str | None
    tags: list[str]
    description: str | None


class PipelineList(Out):
    items: list[PipelineSummary]
    #: file -> the error importing it gave
    import_errors: dict[str, str]


@router.get("", dependencies=[Depends(require(Role.VIEWER))])
def list_pipelines(ph: Phloem = Depends(application)) -> PipelineList:
    """Every pipeline the catalog knows, and the files that failed to import."""
    catalog = ph.store.catalog
    rows = catalog.pipelines()
    return PipelineList(
        items=[
            PipelineSummary(
                name=r.info.name,
                file=r.info.file,
                schedule=r.info.schedule,
                timezone=r.info.timezone,
                paused=r.paused,
                active=r.active,
                code_hash=r.info.code_hash,
                owner=r.info.owner,
                tags=list(r.info.tags),
                description=r.info.description,
            )
            for r in rows
        ],
        import_errors=catalog.import_errors(),
    )

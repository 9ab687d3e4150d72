"""Find the pipeline a command names, before any scheduler has read the folder.

``phloem trigger daily``, ``backfill``, ``pipelines pause`` and the like name a pipeline the
catalog may not know yet: a user who has just written ``pipelines/daily.py`` backfills it
before starting a scheduler. These read the pipelines folder (``PHLOEM_PIPELINES``,
``./pipelines``) into the catalog when the name is unknown, and accept ``FILE:PIPELINE`` (or a
file with one pipeline) as ``phloem run`` does. Files are read in the same guarded reader
processes the scheduler uses, with its time limit, so a file that hangs or crashes at import
is reported, not waited on forever.
"""

from __future__ import annotations

import os
from pathlib import Path

from phloem.app import Phloem
from phloem.errors import PipelineNotFound
from phloem.scheduler.discovery import Changes, Discovery, Scan
from phloem.scheduler.parsing import ParserPool

#: how long one file may take to import when a command reads it
READ_TIMEOUT = 30.0


def read_folder(app: Phloem, folder: Path | None = None) -> Changes:
    """Record the pipelines of the folder's files in the catalog (adds and updates; a file
    missing from this folder is left to the scheduler that reads its own)."""
    where = (folder or app.settings.pipelines_dir).resolve()
    pool = ParserPool(workers=2, timeout=READ_TIMEOUT)
    try:
        return Discovery(where, app.store.catalog, pool).refresh()
    finally:
        pool.close()


def read_file(app: Phloem, path: Path) -> Changes:
    """Record the pipelines of one file in the catalog."""
    file = str(path)
    st = os.stat(file)
    scan = Scan(present=[file], todo=[file], stats={file: (st.st_mtime, st.st_size)})
    pool = ParserPool(workers=1, timeout=READ_TIMEOUT)
    try:
        return Discovery(path.parent, app.store.catalog, pool).apply(scan, pool.parse([file]))
    finally:
        pool.close()


def find_pipeline(app: Phloem, target: str, folder: Path | None = None) -> str:
    """The name of the pipeline ``target`` names: a name the catalog knows, one defined in
    the pipelines folder, or ``FILE[:PIPELINE]``; the catalog knows it afterwards."""
    file_part, _, name = target.partition(":") if ":" in target else (target, "", "")
    if file_part.endswith(".py"):
        return _from_file(app, Path(file_part), name or None, target)
    catalog = app.store.catalog
    try:
        catalog.pipeline(target)
        return target
    except PipelineNotFound:
        pass
    where = (folder or app.settings.pipelines_dir).resolve()
    changes = read_folder(app, where)
    try:
        catalog.pipeline(target)
    except PipelineNotFound as exc:
        broken = "".join(f"\n  {f}: {e}" for f, e in sorted(changes.errors.items()))
        raise PipelineNotFound(
            f"{exc} (read {where}"
            + (f"; these files could not be read:{broken})" if broken else ")"),
            pipeline=target,
        ) from None
    return target


def _from_file(app: Phloem, path: Path, name: str | None, target: str) -> str:
    if not path.is_file():
        raise PipelineNotFound(f"no pipeline file {path}", pipeline=target)
    changes = read_file(app, path.resolve())
    if changes.errors:
        raise PipelineNotFound(
            f"cannot read pipelines from {path}: {next(iter(changes.errors.values()))}",
            pipeline=target,
        )
    found = [i.name for r in changes.parsed for i in r.pipelines]
    if name is not None:
        if name not in found:
            raise PipelineNotFound(
                f"{path} defines no pipeline '{name}' (it defines: {', '.join(found) or 'none'})",
                pipeline=target,
            )
        return name
    if len(found) != 1:
        raise PipelineNotFound(
            f"{path} defines {len(found)} pipelines ({', '.join(found) or 'none'}); name one "
            f"as {path}:PIPELINE",
            pipeline=target,
        )
    return found[0]


__all__ = ["find_pipeline", "read_file", "read_folder"]

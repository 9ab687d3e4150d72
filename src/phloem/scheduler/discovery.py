"""Keep the catalog in step with a folder of pipeline files: new, changed, broken, deleted."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from phloem.scheduler.parsing import FileReport, ParserPool, file_digest
from phloem.store.port import PipelineCatalog
from phloem.store.types import PipelineInfo

log = logging.getLogger("phloem.scheduler")


@dataclass
class Scan:
    """The files of the folder (None: the folder is missing), those to read again, and those
    whose time stamp changed but not their content."""

    present: list[str] | None
    todo: list[str] = field(default_factory=list)
    touched: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    stats: dict[str, tuple[float, int]] = field(default_factory=dict)  # of ``todo``


@dataclass
class Changes:
    parsed: list[FileReport] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed_pipelines: list[str] = field(default_factory=list)

    @property
    def errors(self) -> dict[str, str]:
        return {r.file: r.error for r in self.parsed if r.error}


def pipeline_files(folder: Path) -> list[str]:
    """Python files under ``folder``, skipping hidden and private (``_x.py``) ones."""
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        out.extend(
            str(Path(root, f).resolve())
            for f in sorted(files)
            if f.endswith(".py") and not f.startswith((".", "_"))
        )
    return out


class Discovery:
    def __init__(self, folder: Path, catalog: PipelineCatalog, pool: ParserPool) -> None:
        self.folder = folder
        self.catalog = catalog
        self.pool = pool
        self._seen: dict[str, tuple[float, int, str]] = {}  # path -> (mtime, size, digest)
        self.pipelines: dict[str, PipelineInfo] = {}

    def refresh(self, now: float | None = None) -> Changes:
        """Parse what is new or changed since the last call; forget what was deleted."""
        scan = self.scan()
        return self.apply(scan, self.pool.parse(scan.todo), now)

    def scan(self) -> Scan:
        """What changed in the folder since the last ``apply``: stats and digests only, no
        import. Safe off the loop thread while no ``apply`` runs (it reads, never writes)."""
        if not self.folder.is_dir():
            return Scan(present=None)
        scan = Scan(present=pipeline_files(self.folder))
        for path in scan.present or ():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            known = self._seen.get(path)
            if known is not None and (known[0], known[1]) == (st.st_mtime, st.st_size):
                continue
            if known is not None and file_digest(path) == known[2]:
                scan.touched[path] = (st.st_mtime, st.st_size, known[2])
                continue
            scan.todo.append(path)
            scan.stats[path] = (st.st_mtime, st.st_size)
        return scan

    def apply(self, scan: Scan, reports: list[FileReport], now: float | None = None) -> Changes:
        """Record a scan and its files' reports in the catalog (on the loop thread)."""
        now = time.time() if now is None else now
        changes = Changes()
        if scan.present is None:
            log.warning("pipelines folder %s does not exist", self.folder)
            return changes
        present = scan.present
        self._seen.update(scan.touched)
        # in path order, so which of two files defining one name wins does not depend on
        # which worker finished first
        for report in sorted(reports, key=lambda r: r.file):
            changes.parsed.append(report)
            # the stat taken before reading: a change made meanwhile is read at the next scan
            mtime, size = scan.stats.get(report.file, (0.0, -1))
            if report.error:
                log.error("cannot read pipelines from %s: %s", report.file, report.error)
                self.catalog.import_failed(report.file, report.error, now)
                self._seen[report.file] = (mtime, size, "")
                continue
            self._seen[report.file] = (mtime, size, report.digest)
            taken = {n: i.file for n, i in self.pipelines.items()}
            clean, problems = [], []
            for info in report.pipelines:
                other = taken.get(info.name)
                if other is not None and other != info.file:
                    problems.append(
                        f"pipeline name '{info.name}' is already defined in {other}; "
                        "pipeline names must be unique across files"
                    )
                    continue
                clean.append(info)
            for old in [n for n, i in self.pipelines.items() if i.file == report.file]:
                del self.pipelines[old]
            for info in clean:
                self.pipelines[info.name] = info
            changes.changed_pipelines += self.catalog.sync_file(report.file, clean, now)
            if problems:  # after the sync, which clears the file's earlier errors
                log.error("%s: %s", report.file, "; ".join(problems))
                self.catalog.import_failed(report.file, "; ".join(problems), now)
        gone = set(self._seen) - set(present)
        for path in sorted(gone):
            del self._seen[path]
            for name in [n for n, i in self.pipelines.items() if i.file == path]:
                del self.pipelines[name]
            self.catalog.file_removed(path, now)
            changes.removed.append(path)
        return changes

"""Pipeline graphs for the API, loaded from their files off the request path.

The catalog holds what discovery recorded of each pipeline (name, file, schedule, code hash),
not its graph; the graph (tasks, edges, options, params) needs the file imported. That happens
here once per (pipeline, code hash), on a small thread pool: a request waits for a load
at most ``wait`` seconds, then gets a 503 with ``Retry-After`` while the load goes on, so a
file that takes long (or hangs) at import never holds the server. A file whose code changed
(a new hash in the catalog) is imported anew.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from phloem.dsl.spec import PipelineSpec
from phloem.loading import load_pipeline, reload_pipeline
from phloem.server.problems import Problem
from phloem.store.types import PipelineRow

#: how long one request waits for a pipeline's file to be imported
DEFAULT_WAIT = 10.0


class SpecCache:
    def __init__(self, wait: float = DEFAULT_WAIT, loaders: int = 2) -> None:
        self.wait = wait
        self._pool = ThreadPoolExecutor(max_workers=loaders, thread_name_prefix="phloem-spec")
        self._lock = threading.Lock()
        self._loads: dict[tuple[str, str], Future[PipelineSpec]] = {}
        self._hash_loaded: dict[str, str] = {}  # file -> the code hash last imported

    def get(self, row: PipelineRow) -> PipelineSpec:
        """The graph of the catalog's pipeline ``row`` (raises what importing it raised)."""
        info = row.info
        key = (info.name, info.code_hash)
        with self._lock:
            future = self._loads.get(key)
            if future is None or (future.done() and future.exception() is not None):
                # a failed import is tried again on the next request (the file may be fixed)
                stale = self._hash_loaded.get(info.file) not in (None, info.code_hash)
                future = self._pool.submit(self._load, f"{info.file}:{info.name}", stale)
                self._loads[key] = future
                self._hash_loaded[info.file] = info.code_hash
        try:
            return future.result(timeout=self.wait)
        except FutureTimeout:
            raise Problem(
                503,
                "pipeline loading",
                f"pipeline '{info.name}' is still being imported from {info.file}; try again in "
                "a few seconds (does the file do work at import time? move it into a task)",
                headers={"Retry-After": "5"},
            ) from None

    @staticmethod
    def _load(target: str, fresh: bool) -> PipelineSpec:
        return (reload_pipeline(target) if fresh else load_pipeline(target)).spec

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["SpecCache"]

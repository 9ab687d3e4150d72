"""Reading pipeline files off the scheduler's loop thread.

A file that hangs at import, or just takes its time, must not pause the runs the scheduler
drives. So the loop only starts a read and, turns later, takes its result: ``Reader`` scans the
folder and parses the changed files on a thread of its own (the imports themselves happen in
parser processes with a time limit, see ``parsing``), and ``SpecLoader`` imports a pipeline's
file into this process (to create and drive its runs) on a thread per file. Both wake the loop
through a ``Wakeup`` pipe when a result is ready.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from phloem.dsl.spec import PipelineSpec
from phloem.scheduler.discovery import Discovery, Scan
from phloem.scheduler.parsing import FileReport

log = logging.getLogger("phloem.scheduler")


class Wakeup:
    """A self-pipe the loop waits on beside its executor, so a background result wakes it."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()  # a late set() must never write to a reused fd
        self._closed = False

    def fileno(self) -> int:
        return self._r

    def usable(self) -> bool:
        return True

    def set(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._w, b"!")
            except OSError:  # full: the loop is due to wake anyway
                pass

    def drain(self) -> bool:
        """Empty the pipe; True if anything had arrived."""
        got = False
        while True:
            try:
                if not os.read(self._r, 512):
                    return got
                got = True
            except OSError:
                return got

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._r)
            os.close(self._w)


@dataclass(frozen=True, slots=True)
class ReadResult:
    scan: Scan | None
    reports: list[FileReport]
    error: BaseException | None = None


class Reader:
    """One folder scan and parse at a time, on a background thread."""

    def __init__(self, discovery: Discovery, wake: Wakeup) -> None:
        self.discovery = discovery
        self.wake = wake
        self._thread: threading.Thread | None = None
        self._result: ReadResult | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def start(self) -> bool:
        """Start a scan unless one is under way (its result not yet taken)."""
        if self._thread is not None:
            return False
        self._result = None
        self._thread = threading.Thread(target=self._read, name="phloem-reader", daemon=True)
        self._thread.start()
        return True

    def _read(self) -> None:
        try:
            scan = self.discovery.scan()
            result = ReadResult(scan, self.discovery.pool.parse(scan.todo))
        except BaseException as exc:  # reported to the loop, which logs it and goes on
            result = ReadResult(None, [], exc)
        self._result = result
        self.wake.set()

    def take(self) -> ReadResult | None:
        """The finished scan's result (once), or None while it runs or when none was started."""
        thread, result = self._thread, self._result
        if thread is None or result is None:
            return None
        thread.join()  # it has handed over its result and is ending
        self._thread, self._result = None, None
        return result

    def wait(self, timeout: float | None = None) -> ReadResult | None:
        """Wait for the scan under way, if any, and take its result."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.take()


class SpecLoader:
    """Imports pipeline files into this process on a thread per file: a file that hangs
    holds its own thread, never the loop, and is reported once it has taken long."""

    def __init__(
        self, load: Callable[[str], PipelineSpec], wake: Wakeup, slow_after: float
    ) -> None:
        self._load = load
        self.wake = wake
        self.slow_after = slow_after
        self._lock = threading.Lock()
        self._running: dict[str, float] = {}  # source -> started (monotonic)
        self._warned: set[str] = set()
        self._done: dict[str, PipelineSpec | BaseException] = {}

    def get(self, source: str) -> PipelineSpec | None:
        """The pipeline's spec once its import finished (its error is raised, once), or None
        while the import runs; the first call starts it."""
        with self._lock:
            done = self._done.pop(source, None)
            if done is None:
                started = self._running.get(source)
                if started is None:
                    self._running[source] = time.monotonic()
                    threading.Thread(
                        target=self._import, args=(source,), name="phloem-import", daemon=True
                    ).start()
                elif time.monotonic() - started > self.slow_after and source not in self._warned:
                    self._warned.add(source)
                    log.warning(
                        "importing %s has taken over %gs; its runs wait for it (does the file "
                        "do work at import time? move that into a task)",
                        source,
                        self.slow_after,
                    )
                return None
        if isinstance(done, BaseException):
            raise done
        return done

    def importing(self, source: str) -> bool:
        """Whether ``source`` is being imported (its result not ready yet)."""
        with self._lock:
            return source in self._running

    def _import(self, source: str) -> None:
        result: PipelineSpec | BaseException
        try:
            result = self._load(source)
        except BaseException as exc:  # handed to the loop, which reports it
            result = exc
        with self._lock:
            self._running.pop(source, None)
            self._warned.discard(source)
            self._done[source] = result
        self.wake.set()

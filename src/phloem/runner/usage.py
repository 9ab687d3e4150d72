"""What an attempt costs (CPU seconds, peak resident memory, wall time) and the memory limit
a worker process enforces for it.

A worker runs one attempt at a time, so process-wide measures are the attempt's: CPU time is
the difference of ``getrusage`` (the process and the children it waited for), and the peak
RSS is the kernel's high-water mark, reset before each attempt (``/proc/self/clear_refs``).
Both files are opened once per process and re-read with ``pread``: a fresh ``open`` of a
``/proc`` file costs a hundred microseconds, which the per-task path cannot pay.

The peak is read from ``getrusage`` (already called for the CPU time) whenever that says
exactly what ``VmHWM`` in ``/proc/self/status`` would: its ``ru_maxrss`` is the larger of the
same high-water mark and a mark the process carries over from an ``exec`` (set only then, or
when the whole process exits; a fork starts it at zero). So once a reset has shown how high
that carried mark can be at most (``floor``), a peak above it is the high-water mark itself;
only one at or below it is read from ``/proc/self/status`` (whose text the kernel builds on
each read, tens of microseconds a task).

The limit is ``RLIMIT_AS`` set to what the process has mapped now plus the attempt's
allowance, and put back afterwards: an allocation past it fails at once in the task as a
``MemoryError`` (which phloem reports as "out of memory at 2 GiB"), instead of the kernel
killing the worker, or the machine, later. Linux only; elsewhere nothing is measured or limited.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def human_bytes(n: float) -> str:
    """``2147483648`` -> ``2 GiB``; ``1610612736`` -> ``1.5 GiB``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_seconds: float
    peak_rss: int | None  # bytes; None where the kernel does not say
    wall_seconds: float = 0.0  # from start to stop (what reserved resources are held for)


class UsageMeter:
    """Measures one attempt at a time in this process (open it in the process it measures)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._clear: int | None = None
        self._status: int | None = None
        #: bytes; at least the peak ``getrusage`` carries over from before this process (see
        #: the module's docstring): one above it is this process's own high-water mark
        self._floor = 0
        try:
            self._clear = os.open("/proc/self/clear_refs", os.O_WRONLY)
            self._status = os.open("/proc/self/status", os.O_RDONLY)
            os.pwrite(self._clear, b"5", 0)
            self._floor = _maxrss(resource.getrusage(resource.RUSAGE_SELF))
        except OSError:
            self.close()
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def close(self) -> None:
        for fd in (self._clear, self._status):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._clear = self._status = None

    @staticmethod
    def _cpu(me: resource.struct_rusage | None = None) -> float:
        if me is None:
            me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def start(self) -> None:
        if self._clear is not None:
            try:
                os.pwrite(self._clear, b"5", 0)  # reset the peak RSS to the current RSS
            except OSError:
                self.close()
        self._cpu0 = self._cpu()
        self._wall0 = time.monotonic()

    def stop(self) -> Usage:
        wall = max(0.0, time.monotonic() - self._wall0)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return Usage(max(0.0, self._cpu(me) - self._cpu0), self._peak(_maxrss(me)), wall)

    def _peak(self, maxrss: int) -> int | None:
        if self._status is None or self._clear is None:
            return None
        if maxrss > self._floor:
            return maxrss  # the high-water mark since start() (see the module's docstring)
        try:
            text = os.pread(self._status, 8192, 0)
        except OSError:
            return None
        at = text.find(b"VmHWM:")
        if at < 0:
            return None
        return int(text[at + 6 : text.index(b"kB", at)].strip()) * 1024


def _maxrss(usage: resource.struct_rusage) -> int:
    return int(usage.ru_maxrss) * 1024  # KiB on Linux (where alone a peak is measured)


def _mapped() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * _PAGE


#: what an attempt without a limit enters (reusable; on every attempt of the hot path)
_NO_LIMIT = nullcontext()


def memory_limit(limit: int | None) -> AbstractContextManager[None]:
    """Let the code inside allocate at most ``limit`` more bytes of address space."""
    return _limited(limit) if limit else _NO_LIMIT


@contextmanager
def _limited(limit: int) -> Iterator[None]:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = _mapped() + limit
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (OSError, ValueError):
        yield  # not Linux, or not allowed: run without the limit rather than not at all
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


__all__ = ["Usage", "UsageMeter", "human_bytes", "memory_limit"]

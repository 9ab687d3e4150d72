"""Keep numeric libraries from oversubscribing the machine.

Each worker process runs one attempt at a time, so by default its BLAS/OpenMP pools get one
thread (several workers each spawning one thread per core made HistGradientBoosting 15x slower
on 2 cores). A task that declares ``resources={"cpus": n}`` gets n threads for its attempts.
Settings a user made in the environment are left alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager

_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_NUMERIC = ("numpy", "scipy", "sklearn", "torch")
#: what an attempt with nothing to limit enters (reusable; on every attempt of the hot path)
_NOTHING = contextlib.nullcontext()


class ThreadBudget:
    def __init__(self) -> None:
        self._user_set = any(v in os.environ for v in _VARS)
        self._limited = False
        if not self._user_set:
            for var in _VARS:  # libraries loaded later read these when they start
                os.environ[var] = "1"

    def _limit_loaded(self) -> None:
        """Libraries already loaded (inherited from the parent) need threadpoolctl."""
        if self._limited or self._user_set:
            return
        if not any(map(sys.modules.__contains__, _NUMERIC)):
            return
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self._limited = True
            return
        threadpool_limits(limits=1)
        self._limited = True

    def attempt(self, cpus: float) -> AbstractContextManager[None]:
        """What to run an attempt of a task asking for ``cpus`` in (nothing to do, the usual
        case, costs no generator)."""
        self._limit_loaded()
        n = max(1, int(cpus))
        if n <= 1 or self._user_set or not self._limited:
            return _NOTHING
        return _threads(n)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield

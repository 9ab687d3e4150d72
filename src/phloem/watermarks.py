"""``phloem.watermark``: how far an incremental task got, committed with its success.

::

    @task
    def load_orders() -> int:
        wm = phloem.watermark("orders", default=datetime(2026, 1, 1, tzinfo=timezone.utc),
                              lookback=timedelta(hours=1))
        rows = fetch(since=wm.since)          # a grace period for late rows
        if rows:
            wm.advance(max(r.ts for r in rows))
        return len(rows)

``wm.value`` is the last committed value (or ``default``). ``wm.advance(v)`` changes nothing
while the task runs: it is an attempt effect (``phloem.effects``), committed in the same
transaction as the attempt's success. A task that fails after advancing leaves the watermark
where it was, and its retry reads the old value. An advance must not go back (a
:class:`~phloem.errors.WatermarkError` says so at once) unless ``force=True``; the store
checks again at commit time against advances other runs committed meanwhile
(``phloem.store.watermarks`` has the rules).

Backfills: a backfill run reads the live watermark like any run, and its advances only ever
move it forward. An advance behind the current value in a backfill is a no-op (noted in the
task's log) instead of an error, and ``force=True`` is refused there: a backfill re-processes
old intervals, it must not rewind the live pipeline. Rewind by hand with
``phloem watermarks set NAME VALUE --force``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from phloem.context import TaskContext, current
from phloem.effects import WatermarkAdvanced, record
from phloem.errors import WatermarkError
from phloem.states import RunType
from phloem.watermark_values import Value, compare, encode

MAX_NAME = 250


class Watermark:
    """A watermark as the running attempt sees it (see the module docstring)."""

    def __init__(
        self,
        name: str,
        value: Value | None,
        *,
        version: int,
        default: Value | None,
        lookback: timedelta | int | float | None,
        ctx: TaskContext,
    ) -> None:
        self.name = name
        self._value = value
        self._version = version
        self.default = default
        self.lookback = lookback
        self._ctx = ctx
        self._pending: Value | None = None

    @property
    def value(self) -> Value | None:
        """The last committed value, or the default when none was ever committed."""
        return self.default if self._value is None else self._value

    @property
    def committed(self) -> bool:
        """Whether a value was committed (else ``value`` is the default)."""
        return self._value is not None

    @property
    def since(self) -> Value | None:
        """``value`` minus ``lookback``: where to start reading, with a grace period for
        data that arrives late."""
        v = self.value
        if v is None or self.lookback is None:
            return v
        return v - self.lookback  # type: ignore[operator,return-value]

    @property
    def pending(self) -> Value | None:
        """The value this attempt advanced to (committed only if it succeeds)."""
        return self._pending

    def advance(self, value: Any, *, force: bool = False) -> bool:
        """Move the watermark to ``value`` when this attempt succeeds. Returns False when
        nothing will change (the same value, or a backfill's advance behind the current one)."""
        kind, text = encode(value, name=self.name)
        backfill = self._ctx.run_type == RunType.BACKFILL.value
        if force and backfill:
            raise WatermarkError(
                f"a backfill run cannot force watermark '{self.name}' (backfills never move "
                "the live watermark back); set it by hand with `phloem watermarks set "
                f"{self.name} VALUE --force`"
            )
        here = self._pending if self._pending is not None else self._value
        if here is not None and not force:
            c = compare(value, here, name=self.name)
            if c < 0:
                if backfill:
                    self._ctx.log.info(
                        "watermark '%s' stays at %s: a backfill does not move it back to %s",
                        self.name, here, value,
                    )
                    return False
                raise WatermarkError(
                    f"watermark '{self.name}' is at {here!r}; advancing to {value!r} would move "
                    "it back: pass force=True to move it back on purpose"
                )
            if c == 0:
                return False
        record(
            WatermarkAdvanced(self.name, kind, text, self._version, force),
            what="wm.advance()",
        )
        self._pending = value
        return True

    def __repr__(self) -> str:
        return f"Watermark({self.name!r}, value={self.value!r}, pending={self._pending!r})"


def watermark(
    name: str,
    default: Any = None,
    *,
    lookback: timedelta | int | float | None = None,
) -> Watermark:
    """The watermark ``name`` as last committed (``default`` if never), for this task to read
    from and advance; only inside a task, on a store other processes can open."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise WatermarkError(
            f"a watermark name must be a non-empty string of at most {MAX_NAME} characters, "
            f"not {name!r}"
        )
    ctx = current()
    if ctx is None:
        raise WatermarkError(
            "phloem.watermark() only works while a task runs (its advance commits with the "
            "task's success); outside one, read it with `phloem watermarks list`"
        )
    if default is not None:
        encode(default, name=name)
    if lookback is not None:
        _check_lookback(name, default, lookback)
    from phloem.variables import run_store

    found = run_store("watermarks").watermarks.get(name)
    wm = Watermark(
        name,
        None if found is None else found.value,
        version=0 if found is None else found.version,
        default=default,
        lookback=lookback,
        ctx=ctx,
    )
    if lookback is not None and wm.value is not None:
        _check_lookback(name, wm.value, lookback)
    return wm


def _check_lookback(name: str, value: Any, lookback: Any) -> None:
    if isinstance(lookback, bool):
        ok = False
    elif isinstance(value, (datetime, date)):
        ok = isinstance(lookback, timedelta)
    elif value is None:
        ok = isinstance(lookback, (timedelta, int, float))
    else:
        ok = isinstance(value, (int, float)) and isinstance(lookback, (int, float))
    if not ok:
        raise WatermarkError(
            f"watermark '{name}': lookback {lookback!r} does not fit its value {value!r} (a "
            "timedelta for dates and times, a number for numbers, none for strings)"
        )


__all__ = ["Watermark", "watermark"]

"""Watermarks of incremental tasks (``phloem.watermark``): read by tasks, moved only by the
success of the attempt that advanced them, and by hand (``phloem watermarks set|reset``).

Every move is a compare-and-set on the row's ``version``, inside the transaction that ends the
attempt, and every move (and every advance that was not applied, with why) is appended to
``watermark_history``. The rules at commit time, where the value may have moved since the
task read it:

- a plain advance moves the watermark forward only; one behind the value held now (another
  run advanced it meanwhile) is kept out, so the watermark is the furthest committed value;
- ``force=True`` sets the value whatever it is, but only if nobody moved it since the task
  read it (else it is dropped: a reset must not undo a newer advance it never saw);
- a backfill run's advance never moves the watermark back, forced or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from phloem.effects import AttemptEffects, WatermarkAdvanced
from phloem.errors import WatermarkError
from phloem.states import RunType
from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient
from phloem.store.rows import insert_new
from phloem.watermark_values import Value, comparable, compare, decode

_W, _H = s.watermarks, s.watermark_history


@dataclass(frozen=True, slots=True)
class WatermarkRecord:
    name: str
    kind: str
    value: Value
    version: int
    updated_at: float
    run_id: str | None
    task_id: str | None


@dataclass(frozen=True, slots=True)
class WatermarkChange:
    """One line of a watermark's history."""

    name: str
    outcome: str  # advanced | forced | set | reset | kept | dropped
    kind: str | None
    value: str | None
    previous: str | None
    note: str | None
    run_id: str | None
    task_id: str | None
    at: float


def _record(row: Any) -> WatermarkRecord:
    return WatermarkRecord(
        row.name, row.kind, decode(row.kind, row.value), row.version, row.updated_at,
        row.run_id, row.task_id,
    )


def _history(conn: Connection, **values: Any) -> None:
    conn.execute(_H.insert().values(**values))


# -- the writer of advances, inside the commit that ends the attempt ---------------------------


def write_advances(
    conn: Connection,
    run_id: str,
    items: Sequence[tuple[AttemptEffects, WatermarkAdvanced]],
    now: float,
) -> None:
    """Apply the advances of attempts that succeeded in this commit (the last advance of each
    watermark per attempt), by the rules of the module docstring."""
    last: dict[tuple[str, int, str], tuple[AttemptEffects, WatermarkAdvanced]] = {}
    for a, e in items:
        last[(a.task_id, a.map_index, e.name)] = (a, e)
    runs = s.runs
    run_type = conn.execute(select(runs.c.run_type).where(runs.c.run_id == run_id)).scalar()
    backfill = run_type == RunType.BACKFILL.value
    for (task_id, _, _), (_, e) in sorted(last.items(), key=lambda kv: kv[0][2]):
        _advance(conn, run_id, task_id, e, backfill, now)


def _advance(
    conn: Connection, run_id: str, task_id: str, e: WatermarkAdvanced, backfill: bool, now: float
) -> None:
    who = {"run_id": run_id, "task_id": task_id, "at": now, "name": e.name}
    forced = e.force and not backfill
    for _ in range(5):  # another transaction moved it between our read and our write: again
        row = conn.execute(select(_W).where(_W.c.name == e.name)).first()
        if row is None:
            made = conn.execute(
                insert_new(conn.dialect.name, _W)
                .values(
                    name=e.name, kind=e.kind, value=e.value, version=1, updated_at=now,
                    run_id=run_id, task_id=task_id,
                )
                .returning(_W.c.name)
            ).first()
            if made is not None:  # (rowcount is not reliable for ON CONFLICT DO NOTHING)
                outcome = "forced" if forced else "advanced"
                _history(conn, outcome=outcome, kind=e.kind, value=e.value, **who)
                return
            continue
        outcome, note = _decide(row, e, forced, backfill)
        if outcome == "same":
            return
        if outcome in ("kept", "dropped"):
            _history(
                conn, outcome=outcome, kind=e.kind, value=e.value, previous=row.value, note=note,
                **who,
            )
            return
        res = conn.execute(
            _W.update()
            .where(_W.c.name == e.name, _W.c.version == row.version)
            .values(
                kind=e.kind, value=e.value, version=row.version + 1, updated_at=now,
                run_id=run_id, task_id=task_id,
            )
        )
        if res.rowcount == 1:
            _history(conn, outcome=outcome, kind=e.kind, value=e.value, previous=row.value, **who)
            return
    _history(
        conn, outcome="dropped", kind=e.kind, value=e.value,
        note="the watermark kept changing under this commit", **who,
    )


def _decide(row: Any, e: WatermarkAdvanced, forced: bool, backfill: bool) -> tuple[str, str]:
    current, new = decode(row.kind, row.value), decode(e.kind, e.value)
    if forced:
        if row.version != e.read_version:
            return "dropped", (
                f"moved by {row.run_id or 'hand'} since this task read it; a forced value is "
                "applied only over the value the task saw"
            )
        return ("same", "") if (row.kind, row.value) == (e.kind, e.value) else ("forced", "")
    if not comparable(new, current):
        return "dropped", f"the watermark holds a {row.kind} now, this advance a {e.kind}"
    c = compare(new, current, name=e.name)
    if c > 0:
        return "advanced", ""
    if c == 0:
        return "same", ""
    why = "a backfill never moves a watermark back" if backfill else (
        f"behind the value committed since by {row.run_id or 'hand'}"
    )
    return "kept", why


# -- the read side and changes by hand -----------------------------------------------------------


@resilient
class Watermarks:
    """Watermarks kept in one store."""

    def __init__(self, store: Database) -> None:
        self.store = store

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    def get(self, name: str) -> WatermarkRecord | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(_W).where(_W.c.name == name)).first()
        return None if row is None else _record(row)

    def all(self) -> list[WatermarkRecord]:
        with self.store.engine.connect() as conn:
            return [_record(r) for r in conn.execute(select(_W).order_by(_W.c.name))]

    def history(self, name: str, last: int = 50) -> list[WatermarkChange]:
        """The last ``last`` changes of ``name`` (and advances not applied), oldest first."""
        q = select(_H).where(_H.c.name == name).order_by(_H.c.id.desc()).limit(last)
        with self.store.engine.connect() as conn:
            rows = list(conn.execute(q))
        return [
            WatermarkChange(
                r.name, r.outcome, r.kind, r.value, r.previous, r.note, r.run_id, r.task_id, r.at
            )
            for r in reversed(rows)
        ]

    def set(
        self, name: str, kind: str, value: str, *, force: bool = False, now: float, note: str
    ) -> WatermarkRecord:
        """Set ``name`` by hand (``note`` says who); backwards only with ``force``."""
        with write_transaction(self.store.engine) as conn:
            row = conn.execute(select(_W).where(_W.c.name == name)).first()
            if row is None:
                conn.execute(
                    _W.insert().values(
                        name=name, kind=kind, value=value, version=1, updated_at=now
                    )
                )
            else:
                if not force:
                    new, current = decode(kind, value), decode(row.kind, row.value)
                    if compare(new, current, name=name) < 0:
                        raise WatermarkError(
                            f"watermark '{name}' is at {row.value}; {value} would move it back: "
                            "add --force to move it back on purpose"
                        )
                conn.execute(
                    _W.update()
                    .where(_W.c.name == name)
                    .values(
                        kind=kind, value=value, version=row.version + 1, updated_at=now,
                        run_id=None, task_id=None,
                    )
                )
            _history(
                conn, name=name, outcome="set", kind=kind, value=value,
                previous=None if row is None else row.value, note=note, at=now,
            )
            row = conn.execute(select(_W).where(_W.c.name == name)).one()
            return _record(row)

    def reset(self, name: str, *, now: float, note: str) -> bool:
        """Forget ``name``'s value: tasks read their default again. False if it had none."""
        with write_transaction(self.store.engine) as conn:
            row = conn.execute(select(_W).where(_W.c.name == name)).first()
            if row is None:
                return False
            conn.execute(_W.delete().where(_W.c.name == name, _W.c.version == row.version))
            _history(
                conn, name=name, outcome="reset", kind=row.kind, previous=row.value, note=note,
                at=now,
            )
            return True


__all__ = ["WatermarkChange", "WatermarkRecord", "Watermarks", "write_advances"]

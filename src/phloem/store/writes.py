"""The bodies of the SQL store's write transactions, as methods over an open connection: one
decision's compare-and-sets, its attempts, artifacts and asset events, a run's state, and the
pieces of reopening a run. ``SqlStore`` opens the transaction and calls these, so a whole loop
turn (or a whole reopen) is one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from phloem.effects import AttemptEffects, AttemptUsage
from phloem.errors import StoreError
from phloem.records import TI, Expansion, Key, Transition, expansion_instances
from phloem.states import (
    ACTIVE_TASK_STATES,
    TERMINAL_TASK_STATES,
    AttemptState,
    RunState,
    TaskState,
    task_transition_allowed,
)
from phloem.store import schema as s
from phloem.store.cache import write_cache
from phloem.store.effects import AttemptId, usage_binds, usage_values, usages, write_effects
from phloem.store.engine import Writes, one_round_trip, send_writes
from phloem.store.prepared import Prepared, Sent
from phloem.store.rows import TI_VALUE_COLUMNS, attempt_update, ti_row, ti_values, unindexed
from phloem.store.rows import insert_new as insert_new  # re-exported for store modules
from phloem.store.types import Applied, ArtifactRecord, ArtifactUse, Commit

_TI = s.task_instances
_ACTIVE = {st.value for st in ACTIVE_TASK_STATES}
_TERMINAL = sorted(st.value for st in TERMINAL_TASK_STATES)


class Writer:
    """Write-transaction bodies for one database dialect."""

    def __init__(self, dialect: str, multi_rowcount: bool, prepared: Prepared) -> None:
        self.dialect = dialect
        #: the statements of every commit, run on the driver's cursor
        self.prepared = prepared
        #: the driver reports rows matched by an executemany: a bulk compare-and-set is safe
        self.multi_rowcount = multi_rowcount
        ti = _TI
        self.cas = (
            ti.update()
            .where(
                ti.c.run_id == bindparam("b_run"),
                ti.c.task_id == bindparam("b_task"),
                ti.c.map_index == bindparam("b_map"),
                unindexed(ti.c.state) == bindparam("b_state"),
                ti.c.try_number == bindparam("b_try"),
            )
            .values({c: bindparam(f"v_{c}") for c in TI_VALUE_COLUMNS})
        )

    def set_run_state(
        self,
        conn: Connection,
        run_id: str,
        old: RunState,
        new: RunState,
        now: float,
        later: Writes | None = None,
    ) -> bool:
        """Compare-and-set of the run's state, and its event (kept in ``later``, if given, to
        be sent after the events of the commit's task changes, in the order they happened)."""
        r = s.runs
        values: dict[str, Any] = {"state": new.value}
        if new is RunState.RUNNING:
            values["ended_at"] = None
            if old is RunState.QUEUED or old.is_terminal:
                values["started_at"] = now  # a reopened run starts again (and its timeout)
        if new.is_terminal:
            values["ended_at"] = now
        res = conn.execute(
            r.update().where(r.c.run_id == run_id, unindexed(r.c.state) == old.value).values(values)
        )
        if res.rowcount != 1:
            return False
        row = {"run_id": run_id, "old_state": old.value, "new_state": new.value, "at": now}
        if later is None:
            conn.execute(_INSERT_RUN_EVENT, [row])
        else:
            later.append((_INSERT_RUN_EVENT, [row]))
        return True

    def apply_commit(
        self, conn: Connection, r: Commit, now: float, *, bulk: bool, later: Writes
    ) -> Applied:
        """One run's decision, in the caller's transaction. Writes nobody reads a result of
        (attempts, events) go to ``later``: the caller sends them, in one round trip with the
        COMMIT on PostgreSQL (``engine.send_writes``).

        In a bulk commit on PostgreSQL the fencing check and the compare-and-set travel in
        one round trip and their row counts are read after both ran: a fenced run or a lost
        compare-and-set raises ``LostRace``, the caller rolls the transaction back and
        applies each run on its own, where the fencing check runs first, alone."""
        together = (
            bulk and self.multi_rowcount and r.owner is not None and not r.expansions
        ) and self.prepared.pipelines
        checks: list[tuple[Sent, int]] = []
        usage_written: set[AttemptId] = set()
        with one_round_trip(conn) if together else nullcontext():
            if r.owner is not None:
                held = self.prepared.send(
                    conn,
                    _RENEW_LEASE,
                    {"b_run": r.run_id, "b_owner": r.owner, "v_until": now + r.lease_ttl},
                )
                if not together and held.rowcount() != 1:
                    return Applied(fenced=True)
            applied = self.transitions(
                conn,
                r.run_id,
                r.transitions,
                r.expansions,
                now,
                bulk=bulk,
                holder=r.owner,
                effects=r.effects,
                usage_written=usage_written,
                later=later,
                checks=checks if together else None,
            )
        if together:
            fenced = held.rowcount() != 1
            if fenced or any(sent.rowcount() != n for sent, n in checks):
                raise LostRace
        self.finish_commit(conn, r.run_id, applied, r.run_state, r.artifacts, r.uses, now, later)
        self.asset_events(conn, r.run_id, applied, r.asset_outputs, now)
        if r.effects:
            write_effects(conn, r.run_id, applied, r.effects, now, usage_written)
        if r.cache_entries or r.cache_checks:
            write_cache(conn, self.dialect, r, applied, now)
        return applied

    def asset_events(
        self,
        conn: Connection,
        run_id: str,
        applied: Applied,
        asset_outputs: Mapping[str, tuple[str, ...]] | None,
        now: float,
    ) -> None:
        """A task that updates assets records one event per asset when it succeeds, in the
        same transaction as its success."""
        if not asset_outputs:
            return
        rows = [
            {"asset": asset, "run_id": run_id, "task_id": t.new.task_id, "at": now}
            for t in applied.transitions
            if t.new.state is TaskState.SUCCESS and t.old.state is not TaskState.SUCCESS
            for asset in asset_outputs.get(t.new.task_id, ())
        ]
        if rows:
            conn.execute(s.asset_events.insert(), rows)

    def finish_commit(
        self,
        conn: Connection,
        run_id: str,
        applied: Applied,
        run_state: tuple[RunState, RunState] | None,
        artifacts: Sequence[ArtifactRecord],
        uses: Sequence[ArtifactUse],
        now: float,
        later: Writes | None = None,
    ) -> None:
        # a run state decided from changes that lost their compare-and-set is stale: it is
        # not applied, and the caller reloads and decides again
        if (
            run_state is not None
            and not applied.lost
            and self.set_run_state(conn, run_id, *run_state, now, later)
        ):
            applied.run_state = run_state[1]
        if artifacts or uses:
            self.record_artifacts(conn, run_id, artifacts, uses, now)

    def transitions(
        self,
        conn: Connection,
        run_id: str,
        transitions: Sequence[Transition],
        expansions: Sequence[Expansion],
        now: float,
        *,
        bulk: bool,
        holder: str | None = None,
        effects: Sequence[AttemptEffects] = (),
        usage_written: set[AttemptId] | None = None,
        later: Writes | None = None,
        checks: list[tuple[Sent, int]] | None = None,
    ) -> Applied:
        """Apply ``transitions`` by compare-and-set and record their attempts and events:
        appended to ``later`` if given (the caller sends them), else sent before returning,
        in one round trip on PostgreSQL. The usage an attempt recorded among ``effects`` is
        written by the update of that attempt's end, one statement less per commit; the
        attempts it was written for are added to ``usage_written``, so ``write_effects``
        does not write it again. With ``checks`` (a bulk compare-and-set sent in a pipeline)
        its row count is left there to be read, with the number of rows it must match."""
        applied = Applied()
        for e in expansions:
            ph = e.placeholder
            pool_row = conn.execute(
                select(_TI.c.pool, _TI.c.pool_slots).where(
                    _TI.c.run_id == run_id, _TI.c.task_id == ph.task_id, _TI.c.map_index == -1
                )
            ).first()
            res = conn.execute(
                _TI.delete().where(
                    _TI.c.run_id == run_id,
                    _TI.c.task_id == ph.task_id,
                    _TI.c.map_index == -1,
                    unindexed(_TI.c.state) == ph.state.value,
                    _TI.c.try_number == ph.try_number,
                )
            )
            if res.rowcount != 1:
                if bulk:
                    raise LostRace
                applied.lost.append(ph.key)
                continue
            created = expansion_instances(e, now)
            rows = [ti_row(run_id, ti) for ti in created]
            if pool_row is not None:
                for row in rows:
                    row["pool"], row["pool_slots"] = pool_row.pool, pool_row.pool_slots
            self.prepared.run(conn, _INSERT_TI, rows)
            self.prepared.run(
                conn,
                _INSERT_EVENTS,
                [
                    {
                        "run_id": run_id,
                        "task_id": ti.task_id,
                        "map_index": ti.map_index,
                        "try_number": ti.try_number,
                        "old_state": ph.state.value,
                        "new_state": ti.state.value,
                        "at": now,
                        "reason": f"expanded into {e.count}",
                    }
                    for ti in created
                ],
            )
            applied.expansions.append(e)
        # collapse consecutive changes of one instance into one compare-and-set
        chains: dict[Key, list[Transition]] = {}
        for t in transitions:
            if t.new.state is not t.old.state and not task_transition_allowed(
                t.old.state, t.new.state
            ):
                raise StoreError(
                    f"refused transition of {t.key[0]}[{t.key[1]}] from {t.old.state.value} to "
                    f"{t.new.state.value} in run {run_id}: not in states.TASK_TRANSITIONS",
                    run=run_id,
                    task=t.key[0],
                )
            chains.setdefault(t.key, []).append(t)
        lost_keys = {k for k in applied.lost}
        params = []
        order = []
        # one lock order for every commit, so two actors changing the same instances cannot
        # deadlock on PostgreSQL
        for key, chain in sorted(chains.items()):
            if key[1] >= 0 and (key[0], -1) in lost_keys:
                lost_keys.add(key)
                continue
            first, last = chain[0].old, chain[-1].new
            p = {
                "b_run": run_id,
                "b_task": key[0],
                "b_map": key[1],
                "b_state": first.state.value,
                "b_try": first.try_number,
            }
            p.update(ti_values(last))
            params.append(p)
            order.append(key)
        if params:
            if bulk and self.multi_rowcount:
                sent = self.prepared.send(conn, self.cas, params)
                if checks is not None:
                    checks.append((sent, len(params)))
                elif sent.rowcount() != len(params):
                    raise LostRace
                won = order
            else:
                won = []
                for key, p in zip(order, params, strict=True):
                    if self.prepared.run(conn, self.cas, p) == 1:
                        won.append(key)
                    else:
                        lost_keys.add(key)
        else:
            won = []
        applied.lost = sorted(lost_keys)
        won_set = set(won)
        winners = [t for t in transitions if t.key in won_set]
        applied.transitions = winners
        if not winners:
            return applied
        writes: Writes = [] if later is None else later
        written = self.record_attempts(
            run_id, winners, now, writes, holder, usages(effects) if effects else None
        )
        writes.append(
            (
                _INSERT_EVENTS,
                [
                    {
                        "run_id": run_id,
                        "task_id": t.new.task_id,
                        "map_index": t.new.map_index,
                        "try_number": t.new.try_number,
                        "old_state": t.old.state.value,
                        "new_state": t.new.state.value,
                        "at": now,
                        "reason": t.reason,
                    }
                    for t in winners
                ],
            )
        )
        if later is None:
            send_writes(conn, writes, prepared=self.prepared)
        if usage_written is not None:
            usage_written.update(written)
        return applied

    def record_attempts(
        self,
        run_id: str,
        ts: Sequence[Transition],
        now: float,
        writes: Writes,
        holder: str | None = None,
        usage: Mapping[AttemptId, AttemptUsage] | None = None,
    ) -> set[AttemptId]:
        """Attempt rows: one per attempt queued (``worker`` names the lease holder of the
        driver that hands it out, so a successor knows whose attempts it inherits), updated
        as it runs and ends. An attempt changed several times in one commit (started and
        ended) is updated once, to its last state: each update sets every column it carries.
        The ``usage`` of an attempt whose end this writes goes in the same update; returns
        the attempts whose usage was written so. The statements go to ``writes``."""
        new_rows = []
        updates: dict[AttemptId, dict[str, Any]] = {}
        for t in ts:
            new, old = t.new, t.old
            if new.state is TaskState.QUEUED:
                new_rows.append(
                    {
                        "run_id": run_id,
                        "task_id": new.task_id,
                        "map_index": new.map_index,
                        "try_number": new.try_number,
                        "state": AttemptState.QUEUED.value,
                        "queued_at": now,
                        "worker": holder,
                    }
                )
            elif old.state.value in _ACTIVE and new.try_number == old.try_number:
                # keyed by attempt, in the order first changed: the last change wins
                updates[(new.task_id, new.map_index, new.try_number)] = {
                    "b_run": run_id,
                    "b_task": new.task_id,
                    "b_map": new.map_index,
                    "b_try": new.try_number,
                    "v_state": AttemptState.of(new.state).value,
                    "v_started": new.started_at,
                    "v_ended": new.ended_at,
                    "v_error": new.error,
                    "ended": new.state.value not in _ACTIVE,
                }
        if new_rows:
            writes.append((_INSERT_ATTEMPTS, new_rows))
        plain = []
        with_usage = []
        written: set[AttemptId] = set()
        for aid, row in updates.items():
            ended = row.pop("ended")
            used = usage.get(aid) if usage and ended else None
            if used is None:
                plain.append(row)
            else:
                row.update(usage_values(used))
                with_usage.append(row)
                written.add(aid)
        if plain:
            writes.append((ATTEMPT_UPDATE, plain))
        if with_usage:
            writes.append((ATTEMPT_END_WITH_USAGE, with_usage))
        return written

    def record_artifacts(
        self,
        conn: Connection,
        run_id: str,
        artifacts: Sequence[ArtifactRecord],
        uses: Sequence[ArtifactUse],
        now: float,
    ) -> None:
        if artifacts:
            known = set(
                conn.execute(
                    select(s.artifacts.c.digest).where(
                        s.artifacts.c.digest.in_({a.digest for a in artifacts})
                    )
                ).scalars()
            )
            fresh = {a.digest: a for a in artifacts if a.digest not in known}
            if fresh:
                # another run may record the same content at the same moment: keep its row
                conn.execute(
                    insert_new(self.dialect, s.artifacts),
                    [
                        {
                            "digest": a.digest,
                            "serializer": a.serializer,
                            "type_name": a.type_name,
                            "size": a.size,
                            "key": a.key,
                            "created_at": now,
                        }
                        for a in fresh.values()
                    ],
                )
        if uses:
            rows = {
                (u.digest, u.task_id, u.map_index, u.role): {
                    "digest": u.digest,
                    "run_id": run_id,
                    "task_id": u.task_id,
                    "map_index": u.map_index,
                    "role": u.role,
                    "try_number": u.try_number,
                    "at": now,
                }
                for u in uses
            }
            # a use recorded already (a retried commit) keeps its row; no read of the run's
            # earlier uses: in a mapped run every instance reads the same input, so that read
            # grew with the run and made it quadratic
            conn.execute(insert_new(self.dialect, s.artifact_uses), list(rows.values()))

    def work_left(self, conn: Connection, run_id: str) -> bool:
        q = (
            select(func.count())
            .select_from(_TI)
            .where(_TI.c.run_id == run_id, _TI.c.state.not_in(_TERMINAL))
        )
        return bool(conn.execute(q).scalar_one())

    def replace_mapped(self, conn: Connection, run_id: str, placeholder: TI, now: float) -> None:
        task_id = placeholder.task_id
        where = (_TI.c.run_id == run_id, _TI.c.task_id == task_id)
        pool_row = conn.execute(select(_TI.c.pool, _TI.c.pool_slots).where(*where)).first()
        conn.execute(_TI.delete().where(*where))
        row = ti_row(run_id, placeholder)
        if pool_row is not None:
            row["pool"], row["pool_slots"] = pool_row.pool, pool_row.pool_slots
        conn.execute(_TI.insert(), [row])
        conn.execute(
            s.events.insert().values(
                run_id=run_id,
                task_id=task_id,
                map_index=-1,
                try_number=placeholder.try_number,
                new_state=placeholder.state.value,
                at=now,
                reason="cleared for re-expansion",
            )
        )


# the statements of every commit, built once: building one costs several times running it
ATTEMPT_UPDATE = attempt_update(
    state="v_state", started_at="v_started", ended_at="v_ended", error="v_error"
)
#: an attempt's end and what it cost, in one statement (usage columns: effects.USAGE_COLUMNS)
ATTEMPT_END_WITH_USAGE = attempt_update(
    state="v_state", started_at="v_started", ended_at="v_ended", error="v_error", **usage_binds()
)
_RENEW_LEASE = (
    s.runs.update()
    .where(s.runs.c.run_id == bindparam("b_run"), s.runs.c.owner == bindparam("b_owner"))
    .values(lease_expires_at=bindparam("v_until"))
)
# inline: no RETURNING of the generated key, which nobody reads (and which a pipeline, see
# one_round_trip, cannot return before its end)
_INSERT_EVENTS = s.events.insert().inline()
_INSERT_TI = _TI.insert().inline()
_INSERT_ATTEMPTS = s.attempts.insert().inline()
_INSERT_RUN_EVENT = s.events.insert().inline()


class LostRace(Exception):
    """A bulk compare-and-set matched fewer rows than expected (or, checked with it, a run's
    fencing check failed); roll back and go run by run, row by row."""

"""What one commit of a chain costs the database, counted (never timed): the statements it
runs on SQLite and PostgreSQL, and on PostgreSQL the round trips to the server; and the usage
an attempt recorded, written by the update of the attempt's end, for every usage field."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

import phloem
from phloem import task
from phloem.effects import AttemptEffects, AttemptUsage, MetricLogged
from phloem.records import TI, RunRecord, Transition
from phloem.states import RunState, RunType, TaskState
from phloem.store import Commit, SqlStore
from phloem.store import schema as s
from phloem.store.effects import USAGE_COLUMNS

CHAIN = 6


@task
def step(x: int) -> int:
    return x + 1


@phloem.pipeline(name="round_trip_chain")
def chain() -> None:
    ref = step(0)
    for _ in range(CHAIN - 1):
        ref = step(ref)


def _kind(statement: str) -> str:
    """A statement's first word and table: ``UPDATE runs``, ``INSERT events``, ``BEGIN``."""
    words = statement.split()
    if words[0] in ("UPDATE", "DELETE"):
        return f"{words[0]} {words[1]}"
    if words[0] == "INSERT":
        return f"INSERT {words[2]}"
    return words[0]


def _collapsed(kinds: list[str]) -> list[str]:
    """Consecutive runs of one statement (one executemany: a run per row) as one."""
    return [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]


class SqliteStatements:
    """What SQLite itself runs on each connection the store opens from now on (its trace
    callback: one call per statement run, so once per row of an executemany), split into the
    transactions that committed. Watching the driver, not SQLAlchemy: the store's hot
    statements go to the driver's cursor directly."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.done: list[tuple[int, list[str]]] = []
        self._current: dict[int, list[str]] = {}
        store.engine.dispose()

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            key = id(dbapi_conn)
            dbapi_conn.set_trace_callback(lambda sql: self._statement(key, sql))

        self._on_connect = on_connect
        event.listen(store.engine, "connect", on_connect)

    def _statement(self, key: int, sql: str) -> None:
        kind = _kind(sql)
        if kind == "BEGIN":
            self._current[key] = []
        elif kind == "COMMIT":
            statements = self._current.pop(key, [])
            if statements:
                self.done.append((key, statements))
        elif kind == "ROLLBACK":
            self._current.pop(key, None)
        elif key in self._current:
            self._current[key].append(kind)

    def close(self) -> None:
        event.remove(self.store.engine, "connect", self._on_connect)
        self.store.engine.dispose()


#: the commit that ends one task of a chain and hands out the next: the fencing check, the
#: compare-and-set of both instances, the next attempt, the end of this one (with its usage)
#: and the events (each statement once, whatever the rows it runs for)
CHAIN_COMMIT = [
    "UPDATE runs",
    "UPDATE task_instances",
    "INSERT attempts",
    "UPDATE attempts",
    "INSERT events",
]

#: on PostgreSQL: BEGIN, the fencing check with the compare-and-set, and the rest with the COMMIT
CHAIN_COMMIT_ROUND_TRIPS = 3


def _begins(line: str) -> bool:
    """A BEGIN sent by the client: a simple query, or in a pipeline a Parse of it."""
    return 'Query\t "BEGIN"' in line or 'Parse\t "" "BEGIN"' in line


class Traces:
    """libpq's trace of each connection the store opens from now on, a file each."""

    def __init__(self, store: SqlStore, where: Path) -> None:
        from psycopg import pq

        self.store = store
        self.files: dict[int, Any] = {}
        self._traced: list[Any] = []
        store.engine.dispose()

        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            out = (where / f"{len(self.files)}.trace").open("w")
            self.files[id(dbapi_conn)] = out
            self._traced.append(dbapi_conn.pgconn)
            dbapi_conn.pgconn.trace(out.fileno())
            dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)

        self._on_connect = on_connect
        event.listen(store.engine, "connect", on_connect)

    def close(self) -> None:
        event.remove(self.store.engine, "connect", self._on_connect)
        self.store.engine.dispose()  # the pooled connections end, their traces are complete
        for pgconn in self._traced:  # one still open (the store's held writer) stops writing
            pgconn.untrace()  # to a file about to close, whose number another file reuses
        for out in self.files.values():
            out.close()

    def committed(self) -> list[tuple[list[str], int]]:
        """Each committed transaction of every connection: the statements the server ran
        (one per Bind: once per row of an executemany; BEGIN and COMMIT left out) and the
        round trips (one ReadyForQuery each). Not counted as a round trip: psycopg preparing
        a statement run five times (a Parse answered by ParseComplete alone), once per
        statement and connection."""
        out: list[tuple[list[str], int]] = []
        for f in self.files.values():
            parsed: dict[str, str] = {}  # prepared statement name -> its SQL
            segment: list[str] = []
            lines = Path(f.name).read_text(errors="replace").splitlines()
            for line in [*lines, ""]:
                if not line or (line.startswith("F") and _begins(line)):
                    if any('CommandComplete\t "COMMIT"' in x for x in segment):
                        answers = [x.split("\t")[2] for x in segment if x.startswith("B")]
                        trips = sum(
                            a == "ReadyForQuery" and answers[i - 1] != "ParseComplete"
                            for i, a in enumerate(answers)
                        )
                        out.append((self._statements(segment, parsed), trips))
                    segment = []
                segment.append(line)
        return out

    @staticmethod
    def _statements(segment: list[str], parsed: dict[str, str]) -> list[str]:
        kinds = []
        for line in segment:
            fields = line.split("\t")
            if not line.startswith("F") or len(fields) < 4:
                continue
            names = re.findall(r'"((?:[^"\\]|\\.)*)"', fields[3])
            if fields[2] == "Parse" and len(names) >= 2:
                parsed[names[0]] = names[1]
            elif fields[2] == "Bind" and len(names) >= 2:
                kind = _kind(parsed[names[1]])
                if kind not in ("BEGIN", "COMMIT"):
                    kinds.append(kind)
        return kinds


def test_a_chain_commit_is_five_statements_and_three_round_trips(
    sql_url: str, tmp_path: Path
) -> None:
    store = SqlStore(sql_url)
    on_pg = store.dialect == "postgresql"
    traces = Traces(store, tmp_path) if on_pg else None
    seen = None if on_pg else SqliteStatements(store)
    try:
        result = phloem.run(chain, store=store, home=tmp_path / "home", workers=1)
    finally:
        if seen is not None:
            seen.close()
        if traces is not None:
            traces.close()
    try:
        assert result.succeeded
        attempts = store.attempts(result.run_id)
    finally:
        store.close()
    # every attempt ended with what it cost, written with its end
    assert len(attempts) == CHAIN
    assert all(a.state.value == "success" and a.cpu_seconds is not None for a in attempts)
    if traces is not None:
        done = traces.committed()
    else:
        assert seen is not None
        done = [(statements, 0) for _, statements in seen.done]
    chained = [
        (statements, trips)
        for statements, trips in done
        if "INSERT attempts" in statements and "UPDATE attempts" in statements
    ]
    # each task but the last hands out the next (a report that arrives late may make a commit
    # of its own, so at least most of them)
    assert len(chained) >= CHAIN // 2
    for statements, trips in chained:
        assert _collapsed(statements) == CHAIN_COMMIT
        # the two instances changed (this one ended, the next queued) in one compare-and-set
        assert statements.count("UPDATE task_instances") == 2
        if on_pg:
            assert trips == CHAIN_COMMIT_ROUND_TRIPS


# -- usage, written with the attempt's end ------------------------------------------------------


def _run(store: SqlStore) -> TI:
    store.create_run(
        RunRecord(
            run_id="r",
            pipeline="p",
            state=RunState.RUNNING,
            logical_date="2024-01-01T00:00:00+00:00",
            params={},
            created_at=1.0,
            run_type=RunType.MANUAL,
            source="f.py:p",
            code_hash="h",
        ),
        [TI(task_id="t")],
    )
    ti = TI(task_id="t")
    queued = replace(ti, state=TaskState.QUEUED, try_number=1, queued_at=2.0)
    store.commit("r", [Transition(ti, replace(ti, state=TaskState.SCHEDULED), None)], now=2.0)
    sched = replace(ti, state=TaskState.SCHEDULED)
    store.commit("r", [Transition(sched, queued, None)], now=2.0)
    return queued


def _usage_row(store: SqlStore) -> dict[str, Any]:
    a = s.attempts
    with store.engine.connect() as conn:
        row = conn.execute(select(a).where(a.c.run_id == "r")).mappings().one()
    return dict(row)


def _every_field() -> AttemptUsage:
    """A usage with a value in every field, one the table can hold (whatever fields it has)."""
    return AttemptUsage(**{f.name: 7 for f in dataclasses.fields(AttemptUsage)})


def test_usage_of_every_field_lands_with_the_attempts_end(sql_url: str) -> None:
    assert tuple(f.name for f in dataclasses.fields(AttemptUsage)) == USAGE_COLUMNS
    store = SqlStore(sql_url)
    try:
        queued = _run(store)
        running = replace(queued, state=TaskState.RUNNING, started_at=3.0)
        done = replace(running, state=TaskState.SUCCESS, ended_at=4.0, output="1")
        metric = MetricLogged("loss", 0.5, None, 3.5)
        effects = (AttemptEffects("t", -1, 1, (_every_field(), metric)),)
        # started and ended in one commit: one update of the attempt, to its end
        [applied] = store.commit_many(
            [Commit("r", (Transition(queued, running), Transition(running, done)), effects=effects)]
        )
        assert applied.complete
        row = _usage_row(store)
        assert row["state"] == "success" and row["started_at"] == 3.0 and row["ended_at"] == 4.0
        assert {c: row[c] for c in USAGE_COLUMNS} == {c: 7 for c in USAGE_COLUMNS}
        assert [m.value for m in store.tracking.metrics("r")] == [0.5]
    finally:
        store.close()


def test_usage_of_an_attempt_whose_end_lost_is_not_written(sql_url: str) -> None:
    store = SqlStore(sql_url)
    try:
        queued = _run(store)
        running = replace(queued, state=TaskState.RUNNING, started_at=3.0)
        store.commit("r", [Transition(queued, running)], now=3.0)
        stale = replace(queued, state=TaskState.SUCCESS, ended_at=4.0)  # from queued: loses
        effects = (AttemptEffects("t", -1, 1, (_every_field(),)),)
        [applied] = store.commit_many([Commit("r", (Transition(queued, stale),), effects=effects)])
        assert applied.lost == [("t", -1)]
        row = _usage_row(store)
        assert row["state"] == "running"
        assert all(row[c] is None for c in USAGE_COLUMNS)
    finally:
        store.close()


def test_a_write_sent_with_the_commit_that_fails_applies_nothing(sql_url: str) -> None:
    """The attempt and event writes travel with the COMMIT (one pipeline on PostgreSQL): one
    that fails raises as any statement does, the whole commit is rolled back, and the store
    goes on working."""
    from sqlalchemy.exc import IntegrityError

    store = SqlStore(sql_url)
    try:
        _run(store)
        with store.engine.begin() as conn:  # an attempt 2 exists already: its insert fails
            conn.execute(
                s.attempts.insert().values(
                    run_id="r", task_id="t", map_index=-1, try_number=2, state="queued"
                )
            )
        queued = store.get_instance("r", "t")
        failed = replace(queued, state=TaskState.UP_FOR_RETRY, ended_at=3.0)
        retry = replace(failed, state=TaskState.QUEUED, try_number=2, queued_at=4.0)
        with pytest.raises(IntegrityError):
            store.commit("r", [Transition(queued, failed), Transition(failed, retry)], now=4.0)
        assert store.get_instance("r", "t") == queued
        assert [a.state.value for a in store.attempts("r")] == ["queued", "queued"]
        # the same connection commits again
        running = replace(queued, state=TaskState.RUNNING, started_at=5.0)
        assert store.commit("r", [Transition(queued, running)], now=5.0).complete
        assert store.get_instance("r", "t") == running
    finally:
        store.close()

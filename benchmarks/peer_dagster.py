"""W2 (a 200-op chain) and W1 (a 1,000-wide fan-out) as Dagster jobs, on Dagster's persistent
SQLite storage; run by ``peers.py`` with the interpreter of its own Dagster venv.

    benchmarks/.venv-dagster/bin/python benchmarks/peer_dagster.py W2|W1 [--executor in_process]

Run in a fresh process with ``DAGSTER_HOME`` set to an empty folder, so the instance is the
default one (run, event log and schedule storage in SQLite files under it): every event is
written durably, as phloem's state is. Prints one JSON line: the run's duration as Dagster
recorded it, and for the chain each op's start minus the previous op's success (read back from
the event log). This file imports Dagster only, never phloem.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

from dagster import (
    DagsterEventType,
    DagsterInstance,
    DynamicOut,
    DynamicOutput,
    In,
    execute_job,
    graph,
    in_process_executor,
    multiprocess_executor,
    op,
    reconstructable,
)

W1_WIDTH = 1000
W2_LENGTH = 200
EXECUTORS = {"in_process": in_process_executor, "multiprocess": multiprocess_executor}


# -- W2: a chain of 200 ops, each adding 1 to the previous output ---------------------------------


@op
def add_one_to_zero() -> int:
    return 0 + 1


@op
def add_one(x: int) -> int:
    return x + 1


@graph
def chain() -> None:
    ref = add_one_to_zero.alias("add_one_0")()
    for i in range(1, W2_LENGTH):
        ref = add_one.alias(f"add_one_{i}")(ref)


# -- W1: make 1000 ints, map a no-op over them, sum the results ----------------------------------


@op(out=DynamicOut(int))
def make_ints():  # type: ignore[no-untyped-def]
    for i in range(W1_WIDTH):
        yield DynamicOutput(i, mapping_key=str(i))


@op
def noop(x: int) -> int:
    return x


@op(ins={"xs": In(list[int])})
def total(xs: list[int]) -> int:
    return sum(xs)


@graph
def fanout() -> None:
    total(make_ints().map(noop).collect())


def w2_in_process():  # type: ignore[no-untyped-def]
    return chain.to_job(name="W2", executor_def=in_process_executor)


def w2_multiprocess():  # type: ignore[no-untyped-def]
    return chain.to_job(name="W2", executor_def=multiprocess_executor)


def w1_in_process():  # type: ignore[no-untyped-def]
    return fanout.to_job(name="W1", executor_def=in_process_executor)


def w1_multiprocess():  # type: ignore[no-untyped-def]
    return fanout.to_job(name="W1", executor_def=multiprocess_executor)


JOBS = {
    ("W2", "in_process"): w2_in_process,
    ("W2", "multiprocess"): w2_multiprocess,
    ("W1", "in_process"): w1_in_process,
    ("W1", "multiprocess"): w1_multiprocess,
}


def step_times(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> dict[str, float]:
    """When each step of the run had an event of ``kind``, as stored in the event log."""
    return {e.step_key: e.timestamp for e in instance.all_logs(run_id, of_type=kind) if e.step_key}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=("W1", "W2"))
    ap.add_argument("--executor", choices=tuple(EXECUTORS), default="in_process")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with DagsterInstance.get() as instance:
        factory = JOBS[(args.workload, args.executor)]
        with execute_job(reconstructable(factory), instance=instance) as result:
            if not result.success:
                print(f"the Dagster run {result.run_id} failed", file=sys.stderr)
                return 1
            run_id = result.run_id
        inside = time.perf_counter() - t0
        stats = instance.get_run_stats(run_id)
        latencies: list[float] = []
        if args.workload == "W2":
            started = step_times(instance, run_id, DagsterEventType.STEP_START)
            done = step_times(instance, run_id, DagsterEventType.STEP_SUCCESS)
            keys = [f"add_one_{i}" for i in range(W2_LENGTH)]
            latencies = [started[b] - done[a] for a, b in itertools.pairwise(keys)]
        steps = len(step_times(instance, run_id, DagsterEventType.STEP_SUCCESS))
    print(
        json.dumps(
            {
                "run": (stats.end_time or 0.0) - (stats.start_time or 0.0),
                "inside": inside,
                "steps": steps,
                "latencies": latencies,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

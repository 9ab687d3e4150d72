"""Branch skips and failures decided as Airflow decides them.

``fixtures/airflow_oracle.json`` holds random DAGs (branches following a random subset of their
direct downstream tasks, tasks that fail, random trigger rules) that a real Airflow 3 ran once
with ``dag.test()``, with the order in which it ran the tasks and every task's final state
(``scripts/airflow_oracle.py`` made it). Each case is replayed here through phloem's engine in
the same rounds and order, and must end in the same states.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import phloem
from phloem.dsl.pipeline import Pipeline
from phloem.states import TaskState
from strategies import Sim

S = TaskState
FIXTURE = Path(__file__).parent / "fixtures" / "airflow_oracle.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["cases"]


def _work() -> None:
    return None


def build(case: dict[str, Any]) -> Pipeline:
    made = []
    for t in case["tasks"]:
        opts = {"name": t["name"], "trigger_rule": t["rule"]}
        deco = phloem.task.branch if t["kind"] == "branch" else phloem.task
        made.append(deco(**opts)(_work))

    def body() -> None:
        refs: dict[str, phloem.TaskRef] = {}
        for t, fn in zip(case["tasks"], made, strict=True):
            ref = fn()
            for up in t["upstream"]:
                refs[up] >> ref
            refs[t["name"]] = ref

    return phloem.pipeline(body, name=case["id"])  # type: ignore[no-any-return]


def replay(case: dict[str, Any]) -> dict[str, str]:
    """Run the case through the engine in rounds, as ``dag.test()`` does: every ready task is
    handed out at once, they run in the order Airflow ran them, and the round's reports are
    decided together (a branch's skips apply at its report, in that order)."""
    plan = {t["name"]: t for t in case["tasks"]}
    rank = {name: i for i, name in enumerate(case["order"])}
    sim = Sim.of(build(case))
    sim.step()
    for _ in range(100):
        ready = sorted(sim.keys_in(S.QUEUED), key=lambda k: (rank.get(k[0], len(rank)), k[0]))
        if not ready:
            break
        events = []
        for key in ready:
            t = plan[key[0]]
            if t["kind"] == "fail":
                done = sim.finished(key[0], "failed", error="planned failure")
            elif t["kind"] == "branch":
                done = sim.finished(key[0], follow=tuple(t["follow"]))
            else:
                done = sim.finished(key[0])
            events += [sim.started(key[0]), done]
        sim.step(*events)
    assert sim.run_state.is_terminal, f"{case['id']} did not end: {sim.states()}"
    return sim.states()


def test_the_fixture_holds_the_interesting_cases() -> None:
    assert len(CASES) >= 150
    for case in CASES:
        kinds = {t["kind"] for t in case["tasks"]}
        assert {"branch", "fail"} <= kinds


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_final_states_match_airflow(case: dict[str, Any]) -> None:
    assert replay(case) == case["states"]

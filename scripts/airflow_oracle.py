"""Record how Airflow decides random DAGs with branches and failures, as a test fixture.

A development-time tool, not part of phloem: run it with a throw-away virtual environment that
has ``apache-airflow`` (3.x) installed, never in CI:

    python3 -m venv /tmp/af && /tmp/af/bin/pip install "apache-airflow>=3.0"
    /tmp/af/bin/python scripts/airflow_oracle.py --cases 300 --out tests/fixtures/airflow_oracle.json

Each case is a random DAG (branch tasks that follow a random subset of their direct downstream
tasks, tasks that fail, random trigger rules), run once with ``dag.test()``; the fixture keeps
the plan, the order in which Airflow ran the tasks and the final state of every task.
``tests/test_airflow_oracle.py`` replays the same order through phloem's engine and compares.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

RULES = [
    "all_success",
    "all_failed",
    "all_done",
    "all_skipped",
    "one_success",
    "one_failed",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "always",
]

DAG_FILE = '''
import json, datetime
from airflow.sdk import dag, task

PLANS = json.loads(open(__file__.replace(".py", ".json")).read())


def build(plan):
    @dag(dag_id=plan["id"], schedule=None, start_date=datetime.datetime(2024, 1, 1),
         catchup=False)
    def body():
        made = {}
        for t in plan["tasks"]:
            if t["kind"] == "branch":
                def fn(follow=t["follow"]):
                    return list(follow)
                op = task.branch(task_id=t["name"], trigger_rule=t["rule"])(fn)()
            elif t["kind"] == "fail":
                def fn():
                    raise ValueError("planned failure")
                op = task(task_id=t["name"], trigger_rule=t["rule"], retries=0)(fn)()
            else:
                def fn():
                    return 1
                op = task(task_id=t["name"], trigger_rule=t["rule"])(fn)()
            made[t["name"]] = op
            for up in t["upstream"]:
                made[up] >> op
    return body()


for plan in PLANS:
    globals()[plan["id"]] = build(plan)
'''


def plan(rnd: random.Random, index: int) -> dict:
    n = rnd.randint(4, 9)
    tasks: list[dict] = []
    for i in range(n):
        name = f"t{i}"
        earlier = [t["name"] for t in tasks]
        k = 0 if not earlier or rnd.random() < 0.15 else rnd.randint(1, min(3, len(earlier)))
        upstream = sorted(rnd.sample(earlier, k))
        rule = "all_success" if rnd.random() < 0.4 else rnd.choice(RULES)
        kind = rnd.choices(["ok", "fail", "branch"], [0.55, 0.2, 0.25])[0]
        tasks.append({"name": name, "upstream": upstream, "rule": rule, "kind": kind})
    for t in tasks:  # a branch follows a random subset of its direct downstream tasks
        down = [d["name"] for d in tasks if t["name"] in d["upstream"]]
        if t["kind"] == "branch":
            t["follow"] = sorted(rnd.sample(down, rnd.randint(0, len(down)))) if down else []
    return {"id": f"case_{index:04d}", "tasks": tasks}


def interesting(p: dict) -> bool:
    kinds = {t["kind"] for t in p["tasks"]}
    return "branch" in kinds and "fail" in kinds


def run_all(folder: Path) -> None:
    import runpy

    dags = {
        k: v for k, v in runpy.run_path(str(folder / "oracle.py")).items() if k.startswith("case_")
    }
    out = []
    for dag_id in sorted(dags):
        dr = dags[dag_id].test()
        tis = list(dr.get_task_instances())
        ran = sorted(
            (ti for ti in tis if ti.state in ("success", "failed")),
            key=lambda ti: (ti.start_date, ti.task_id),
        )
        out.append(
            {
                "id": dag_id,
                "order": [ti.task_id for ti in ran],
                "states": {ti.task_id: str(ti.state) for ti in tis},
                "run_state": str(dr.state),
            }
        )
        print(dag_id, out[-1]["states"], file=sys.stderr)
        # written after every case, so a long recording can be read (or resumed) as it goes
        (folder / "results.json").write_text(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--out", default="tests/fixtures/airflow_oracle.json")
    ap.add_argument("--run", help=argparse.SUPPRESS)  # internal: run the DAGs in this folder
    args = ap.parse_args()
    if args.run:
        run_all(Path(args.run))
        return
    rnd = random.Random(args.seed)
    plans: list[dict] = []
    i = 0
    while len(plans) < args.cases:
        p = plan(rnd, i)
        i += 1
        if interesting(p):
            plans.append(p)
    with tempfile.TemporaryDirectory() as tmp:
        home, dags = Path(tmp, "home"), Path(tmp, "dags")
        print(f"recording in {dags}/results.json", flush=True)
        dags.mkdir()
        (dags / "oracle.json").write_text(json.dumps(plans))
        (dags / "oracle.py").write_text(DAG_FILE)
        env = dict(
            os.environ,
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
        )
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True)
        subprocess.run(
            [sys.executable, __file__, "--run", str(dags)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results = {r["id"]: r for r in json.loads((dags / "results.json").read_text())}
    cases = [{**p, **results[p["id"]]} for p in plans]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    import importlib.metadata

    version = importlib.metadata.version("apache-airflow")
    lines = ",\n".join(json.dumps(c, sort_keys=True) for c in cases)
    Path(args.out).write_text(f'{{"airflow": "{version}", "cases": [\n{lines}\n]}}\n')
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()

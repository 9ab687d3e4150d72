"""The scheduler service on a real store: discovery, triggers, catchup, claims, restarts."""

from __future__ import annotations

import itertools
import select
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import phloem
from phloem.app import Phloem
from phloem.errors import PhloemError, StoreLocked
from phloem.runs import create_run
from phloem.scheduler import Scheduler, SchedulerConfig
from phloem.scheduler.commands import backfill, plan_backfill, set_paused, trigger
from phloem.states import RunState
from phloem.store.catalog import Catalog

GOOD = textwrap.dedent(
    """
    from datetime import datetime, timedelta, timezone
    from phloem import pipeline, task

    @task
    def tick() -> str:
        import phloem
        return phloem.context().logical_date.isoformat(timespec="microseconds")

    @pipeline(schedule=timedelta(seconds=1), catchup=True, max_active_runs=2,
              start_date=datetime.fromisoformat("{start}"))
    def every_second():
        tick()

    @pipeline
    def manual(x: int = 1):
        tick()
    """
)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text)
    return p


def drive(sched: Scheduler, until: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        sched.step()
        if until():
            return
    raise AssertionError("the scheduler did not get there in time")


@pytest.fixture
def env(home: Path) -> Phloem:
    return Phloem.open()


def make(env: Phloem, folder: Path, **kw: object) -> Scheduler:
    cfg = SchedulerConfig(
        folder=folder,
        tick=0.05,
        parse_interval=kw.pop("parse_interval", 0.2),
        parse_timeout=kw.pop("parse_timeout", 5.0),
    )  # type: ignore[arg-type]
    s = Scheduler(env, cfg, **kw)  # type: ignore[arg-type]
    s.start()
    return s


def test_discovery_reports_broken_and_hanging_files_and_keeps_the_rest(
    env: Phloem, tmp_path: Path
) -> None:
    folder = tmp_path / "pipelines"
    start = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    write(folder, "good.py", GOOD.format(start=start))
    write(folder, "broken.py", "import no_such_module_here\n")
    write(folder, "slow.py", "import time\ntime.sleep(60)\n")
    write(folder, "_private.py", "raise SystemExit('never imported')\n")
    sched = make(env, folder, parse_timeout=1.0)
    try:
        sched.refresh(time.time())
        catalog = Catalog(env.store)
        errors = catalog.import_errors()
        assert set(errors) == {str(folder / "broken.py"), str(folder / "slow.py")}
        assert "no_such_module_here" in errors[str(folder / "broken.py")]
        assert "longer than 1s" in errors[str(folder / "slow.py")]
        names = {r.info.name: r for r in catalog.pipelines()}
        assert set(names) == {"every_second", "manual"}
        first_hash = names["manual"].info.code_hash
        # a change makes a new version; a deletion marks the pipelines inactive
        time.sleep(0.01)
        write(folder, "good.py", GOOD.format(start=start) + "\n# v2\n")
        (folder / "broken.py").write_text("x = 1\n")
        sched.refresh(time.time())
        assert catalog.import_errors() == {str(folder / "slow.py"): errors[str(folder / "slow.py")]}
        assert len(catalog.versions("manual")) == 2
        assert catalog.pipeline("manual").info.code_hash != first_hash
        (folder / "good.py").unlink()
        sched.refresh(time.time())
        assert not catalog.pipeline("manual").active
    finally:
        sched.shutdown()


def test_catchup_creates_missed_intervals_once_oldest_first(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=5)
    write(folder, "good.py", GOOD.format(start=start.isoformat()))
    sched = make(env, folder)
    try:

        def enough() -> bool:
            runs = env.store.list_runs(pipeline="every_second", limit=100)
            return len([r for r in runs if r.state is RunState.SUCCESS]) >= 5

        drive(sched, enough)
    finally:
        sched.shutdown()
    runs = sorted(
        env.store.list_runs(pipeline="every_second", limit=100), key=lambda r: r.logical_date
    )
    dates = [r.logical_date for r in runs]
    assert len(dates) == len(set(dates))  # exactly one run per logical date
    assert datetime.fromisoformat(dates[0]) == start
    for a, b in itertools.pairwise(dates):
        assert datetime.fromisoformat(b) - datetime.fromisoformat(a) == timedelta(seconds=1)
    assert all(r.run_type == "scheduled" for r in runs)
    done = [r for r in runs if r.state is RunState.SUCCESS]
    assert (
        phloem.RunResult(
            env, sched.spec(sched.discovery.pipelines["every_second"]), done[0]
        ).output("tick")
        == done[0].logical_date
    )


def test_trigger_with_idempotency_key_pause_and_unknown(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "good.py", GOOD.format(start="2100-01-01T00:00:00+00:00"))
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        run, created = trigger(env, "manual", params={"x": "5"}, idempotency_key="k1")
        again, created_again = trigger(env, "manual", params={"x": "5"}, idempotency_key="k1")
        assert created and not created_again and again.run_id == run.run_id
        assert run.params == {"x": 5}
        drive(sched, lambda: env.store.get_run(run.run_id).state is RunState.SUCCESS)
        with pytest.raises(PhloemError, match=r"unknown pipeline 'manul'.*did you mean 'manual'"):
            trigger(env, "manul")
        with pytest.raises(phloem.ParamError):
            trigger(env, "manual", params={"x": "many"})
        set_paused(env, "manual", True)
        with pytest.raises(PhloemError, match="paused"):
            trigger(env, "manual")
        set_paused(env, "manual", False)
        assert len(env.store.list_runs(pipeline="manual")) == 1
    finally:
        sched.shutdown()


def test_paused_pipelines_get_no_scheduled_runs(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    start = datetime.now(timezone.utc) - timedelta(seconds=3)
    write(folder, "good.py", GOOD.format(start=start.isoformat()))
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        set_paused(env, "every_second", True)
        for _ in range(20):
            sched.step()
        assert env.store.list_runs(pipeline="every_second") == []
        set_paused(env, "every_second", False)
        drive(sched, lambda: len(env.store.list_runs(pipeline="every_second")) > 0)
    finally:
        sched.shutdown()


def test_a_second_scheduler_on_sqlite_is_refused(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    first = make(env, folder)
    try:
        with pytest.raises(StoreLocked, match="one scheduler per SQLite"):
            make(Phloem.open(), folder, scheduler_id="scheduler:elsewhere:1")
    finally:
        first.shutdown()
    # free again once the first stopped
    make(Phloem.open(), folder, scheduler_id="scheduler:elsewhere:1").shutdown()


SLOW = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from phloem import pipeline, task

    @task
    def first(counter: str) -> str:
        with open(counter, "a") as fh:
            fh.write("x")
        return "a"

    @task
    def wait(x: str, gate: str) -> str:
        while not Path(gate).exists():
            time.sleep(0.02)
        return x + "b"

    @pipeline
    def gated(counter: str = "", gate: str = ""):
        wait(first(counter), gate)
    """
)


def test_a_restarted_scheduler_resumes_without_rerunning_finished_tasks(
    env: Phloem, tmp_path: Path
) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "gated.py", SLOW)
    counter, gate = tmp_path / "counter", tmp_path / "gate"
    sched = make(env, folder)
    sched.refresh(time.time())
    run, _ = trigger(env, "gated", params={"counter": str(counter), "gate": str(gate)})

    def waiting() -> bool:
        return any(
            ti.task_id == "wait" and ti.state.value == "running"
            for ti in env.store.load_instances(run.run_id)
        )

    drive(sched, waiting)
    sched.shutdown()  # like a restart: the attempt in flight is stopped, the run resumable
    assert env.store.get_run(run.run_id).owner is None  # freed at once, no lease to wait out
    gate.write_text("open")
    again = make(Phloem.open(), folder, scheduler_id="scheduler:elsewhere:2")
    try:
        drive(again, lambda: env.store.get_run(run.run_id).state is RunState.SUCCESS)
    finally:
        again.shutdown()
    assert counter.read_text() == "x"


def test_backfill_plans_creates_and_does_not_duplicate(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    daily = textwrap.dedent(
        """
        from phloem import pipeline, task

        @task
        def work(flag: str = "") -> str:
            import phloem
            from pathlib import Path
            if flag and Path(flag).exists():
                raise RuntimeError("bad day")
            return phloem.context().logical_date.isoformat(timespec="microseconds")

        @pipeline(schedule="@daily", start_date="2026-01-01", catchup=False)
        def daily(flag: str = ""):
            work(flag)
        """
    )
    write(folder, "daily.py", daily)
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        plan = plan_backfill(env, "daily", "2026-01-01", "2026-01-03")
        assert [(p.logical_date[:10], p.action) for p in plan] == [
            ("2026-01-01", "new"),
            ("2026-01-02", "new"),
            ("2026-01-03", "new"),
        ]
        assert env.store.list_runs(pipeline="daily") == []  # a dry run changes nothing
        made = backfill(env, "daily", "2026-01-01", "2026-01-03")
        assert all(m.run_id for m in made)

        def backfills() -> list[phloem.api.RunRecord]:  # type: ignore[name-defined]
            return [r for r in env.store.list_runs(pipeline="daily") if r.run_type == "backfill"]

        def scheduled() -> list[phloem.api.RunRecord]:  # type: ignore[name-defined]
            return [r for r in env.store.list_runs(pipeline="daily") if r.run_type == "scheduled"]

        runs = {r.run_id for r in backfills()}
        assert len(runs) == 3
        # the scheduler's own run comes once the file is imported: before or after these end
        drive(
            sched,
            lambda: (
                bool(scheduled())
                and all(env.store.get_run(r).state is RunState.SUCCESS for r in runs)
            ),
        )
        # again: every interval is done, nothing is duplicated
        again = backfill(env, "daily", "2026-01-01", "2026-01-03")
        assert {a.action for a in again} == {"exists"}
        assert len(backfills()) == 3
        # the scheduler itself made only the latest interval (catchup=False), once
        assert len(scheduled()) == 1
        # --rerun-all resets the runs and they run again, in place
        rerun = backfill(env, "daily", "2026-01-02", "2026-01-02", rerun_all=True)
        assert [r.action for r in rerun] == ["rerun"]
        rid = rerun[0].run_id
        assert rid is not None
        drive(sched, lambda: env.store.get_run(rid).state is RunState.SUCCESS)
        assert [a.try_number for a in env.store.attempts(rid)] == [1, 2]
        with pytest.raises(PhloemError, match="before the start date"):
            plan_backfill(env, "daily", "2026-01-03", "2026-01-01")
        with pytest.raises(PhloemError, match="unknown pipeline"):
            plan_backfill(env, "nope", "2026-01-01", "2026-01-02")
    finally:
        sched.shutdown()


ASSETS = textwrap.dedent(
    """
    from phloem import Asset, pipeline, task

    @task(outputs=[Asset("features")])
    def build_features() -> int:
        return 1

    @task(outputs=[Asset("labels")])
    def build_labels() -> int:
        return 2

    @task
    def retrain() -> str:
        return "trained"

    @pipeline
    def features():
        build_features()

    @pipeline
    def labels():
        build_labels()

    @pipeline(schedule=[Asset("features"), Asset("labels")])
    def retraining():
        retrain()
    """
)


def test_asset_schedule_runs_once_all_assets_were_updated(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "assets.py", ASSETS)
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        f, _ = trigger(env, "features")
        drive(sched, lambda: env.store.get_run(f.run_id).state is RunState.SUCCESS)
        for _ in range(10):
            sched.step()
        assert env.store.list_runs(pipeline="retraining") == []  # labels not updated yet
        trigger(env, "labels")
        drive(sched, lambda: len(env.store.list_runs(pipeline="retraining")) == 1)
        drive(
            sched, lambda: env.store.list_runs(pipeline="retraining")[0].state is RunState.SUCCESS
        )
        for _ in range(10):
            sched.step()
        assert len(env.store.list_runs(pipeline="retraining")) == 1  # consumed: no repeat
        assert env.store.list_runs(pipeline="retraining")[0].run_type == "asset"
    finally:
        sched.shutdown()


DIES = textwrap.dedent(
    """
    import os, signal
    from pathlib import Path
    from phloem import pipeline, task

    @task(retries=1, retry_delay=0)
    def dies_once(marker: str) -> str:
        if not Path(marker).exists():
            Path(marker).write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"

    @pipeline
    def fragile(marker: str = ""):
        dies_once(marker)
    """
)


def test_a_killed_worker_is_detected_at_once_and_its_attempt_retried(
    env: Phloem, tmp_path: Path
) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "fragile.py", DIES)
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        run, _ = trigger(env, "fragile", params={"marker": str(tmp_path / "m")})
        drive(sched, lambda: env.store.get_run(run.run_id).state.is_terminal)
    finally:
        sched.shutdown()
    attempts = env.store.attempts(run.run_id)
    assert [a.state for a in attempts] == ["up_for_retry", "success"]
    assert "SIGKILL" in (attempts[0].error or "")


def test_bad_input_is_refused_precisely_and_changes_nothing(env: Phloem, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from phloem.cli.main import app

    with pytest.raises(phloem.DefinitionError, match="Mars/Olympus"):

        @phloem.pipeline(schedule="@daily", timezone="Mars/Olympus")
        def martian() -> None:
            pass

    env.store.set_pool("gpu", 2)
    result = CliRunner().invoke(app, ["pools", "set", "gpu", "--", "-1"])
    assert result.exit_code == 2 and "negative" in result.output
    assert env.store.pools() == {"gpu": 2}
    result = CliRunner().invoke(app, ["trigger", "nothing_here"])
    assert result.exit_code == 2 and "unknown pipeline" in result.output
    assert env.store.list_runs() == []


def test_a_triggered_run_wakes_a_sleeping_scheduler_at_once(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "good.py", GOOD.format(start="2100-01-01T00:00:00+00:00"))
    cfg = SchedulerConfig(folder=folder, tick=30.0, parse_interval=60.0)
    sched = Scheduler(env, cfg)
    sched.start()
    try:
        sched.step()  # first tick and parse; the next tick is 30 s away
        sched.step()  # idle: sleeps (without spinning) until woken
        run, _ = trigger(env, "manual")
        # woken by the trigger, not by the tick 30 s away: its listener has something to read
        listeners = [w for w in sched.wakers if w is not sched.wakeup and w.usable()]
        assert select.select(listeners, [], [], 20)[0]
        drive(sched, lambda: env.store.get_run(run.run_id).state is RunState.SUCCESS, 60)
    finally:
        sched.shutdown()


def test_a_pipeline_name_defined_in_two_files_is_reported(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "a.py", GOOD.format(start="2100-01-01T00:00:00+00:00"))
    write(
        folder,
        "b.py",
        "from phloem import pipeline, task\n\n@task\ndef t():\n    return 1\n\n"
        "@pipeline\ndef manual():\n    t()\n",
    )
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        errors = Catalog(env.store).import_errors()
        assert list(errors) == [str(folder / "b.py")]
        assert "'manual' is already defined in" in errors[str(folder / "b.py")]
        assert Catalog(env.store).pipeline("manual").info.file == str(folder / "a.py")
    finally:
        sched.shutdown()


SLOW_DAILY = textwrap.dedent(
    """
    import time
    from phloem import pipeline, task

    @task
    def work() -> str:
        time.sleep(0.2)
        return "done"

    @pipeline(schedule="@daily", start_date="2026-01-01")
    def slow_daily():
        work()
    """
)


def test_backfill_max_active_runs_bounds_its_runs(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "slow.py", SLOW_DAILY)
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        with pytest.raises(PhloemError, match="at least 1"):
            backfill(env, "slow_daily", "2026-01-01", "2026-01-04", max_active_runs=0)
        with pytest.raises(PhloemError, match="nothing to run"):
            backfill(env, "slow_daily", "2025-01-01", "2025-01-04")
        made = backfill(env, "slow_daily", "2026-01-01", "2026-01-04", max_active_runs=1)
        ids = [m.run_id for m in made]
        assert len(ids) == 4
        drive(sched, lambda: all(env.store.get_run(r).state is RunState.SUCCESS for r in ids))
    finally:
        sched.shutdown()
    spans = sorted((env.store.get_run(r).started_at, env.store.get_run(r).ended_at) for r in ids)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # one at a time


CONTINUOUS = textwrap.dedent(
    """
    from phloem import pipeline, task

    @task
    def step() -> int:
        return 1

    @pipeline(schedule="@continuous", max_active_runs=1)
    def forever():
        step()
    """
)


def test_continuous_pipelines_start_a_run_when_the_last_ends(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "forever.py", CONTINUOUS)
    sched = make(env, folder)
    try:
        drive(
            sched,
            lambda: (
                len(
                    [
                        r
                        for r in env.store.list_runs(pipeline="forever")
                        if r.state is RunState.SUCCESS
                    ]
                )
                >= 3
            ),
        )
    finally:
        sched.shutdown()
    runs = sorted(env.store.list_runs(pipeline="forever", limit=100), key=lambda r: r.created_at)
    done = [r for r in runs if r.state is RunState.SUCCESS]
    for a, b in itertools.pairwise(done):
        assert b.started_at is not None and a.ended_at is not None
        assert b.started_at >= a.ended_at  # never two at once


def test_a_long_backfill_queue_does_not_hide_other_runs_from_claims(
    env: Phloem, tmp_path: Path
) -> None:
    from phloem.loading import load_pipeline

    folder = tmp_path / "pipelines"
    write(folder, "slow.py", SLOW_DAILY)
    write(folder, "good.py", GOOD.format(start="2100-01-01T00:00:00+00:00"))
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        backfill(env, "slow_daily", "2026-01-01", "2026-02-09", max_active_runs=1)  # 40 runs
        spec = load_pipeline(f"{folder / 'good.py'}:manual").spec
        late = create_run(env.store, spec, source=f"{folder / 'good.py'}:manual")
        claimed = Catalog(env.store).claim_runs("scheduler:probe:1:x", 30, time.time(), 4)
        ids = [r.run_id for r in claimed]
        assert late.run_id in ids  # behind 40 older backfill runs, still claimable
        assert sum(1 for r in claimed if r.pipeline == "slow_daily") == 1  # batch limit 1
    finally:
        sched.shutdown()


def test_backfill_reruns_wait_for_room_like_new_runs(env: Phloem, tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder, "slow.py", SLOW_DAILY)
    sched = make(env, folder)
    try:
        sched.refresh(time.time())
        made = backfill(env, "slow_daily", "2026-01-01", "2026-01-03")
        ids = [m.run_id for m in made]
        drive(sched, lambda: all(env.store.get_run(r).state is RunState.SUCCESS for r in ids))
        again = backfill(
            env, "slow_daily", "2026-01-01", "2026-01-03", rerun_all=True, max_active_runs=1
        )
        assert {a.action for a in again} == {"rerun"}
        assert {env.store.get_run(r).state for r in ids} == {RunState.QUEUED}
        drive(sched, lambda: all(env.store.get_run(r).state is RunState.SUCCESS for r in ids))
    finally:
        sched.shutdown()
    spans = sorted(
        (a.started_at, a.ended_at) for r in ids for a in env.store.attempts(r) if a.try_number == 2
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # the reruns went one at a time


def test_a_scheduler_publishes_its_loop_durations_to_the_store(
    env: Phloem, tmp_path: Path
) -> None:
    """``/metrics`` in another process (``phloem server``) reads them from there."""
    write(tmp_path / "p", "good.py", GOOD)
    sched = make(env, tmp_path / "p", executor="inline")
    try:
        drive(sched, lambda: sched.durations.snapshot()[2] >= 3)
        sched._next_publish = 0.0  # publish now rather than in 10 s
        sched.step()
        (mine,) = [p for p in env.store.stats.published(0.0) if p.holder == sched.id]
        assert mine.role == "scheduler" and mine.loop[-1][1] >= 3
        assert mine.waited_out == env.store.waited_out
    finally:
        sched.shutdown()

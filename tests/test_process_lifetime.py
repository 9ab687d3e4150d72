"""Every process phloem starts dies with its owner, however the owner dies.

Each test starts the real thing, SIGKILLs (or times out) the owner, and then looks at
``/proc``: nothing it started (a task's subprocess, a shell command, a pipeline parser, a
worker) may be left, within a bounded wait. Every test kills what it started at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import phloem
from phloem import pipeline
from phloem.states import TaskState
from phloem.tasks import shell
from processes import Processes, wait_gone

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; uses prctl"
)


# -- looking at /proc ----------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")  # a zombie nobody reaps is dead


def descendants(root: int) -> set[int]:
    """Every living process below ``root``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] not in ("Z", "X"):
                children.setdefault(st[1], []).append(int(entry))
    out: set[int] = set()
    todo = [root]
    while todo:
        for kid in children.get(todo.pop(), []):
            if kid not in out:
                out.add(kid)
                todo.append(kid)
    return out


def wait_until(check: Callable[[], bool], within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def survivors(pids: set[int], within: float = 10.0) -> set[int]:
    """The processes of ``pids`` still alive after waiting up to ``within`` seconds."""
    wait_until(lambda: not any(_alive(p) for p in pids), within)
    return {p for p in pids if _alive(p)}


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def left(processes: Processes, proc: Any, within: float = 10.0) -> set[int]:
    """What ``proc`` started (found by its marker, however orphaned) still running after
    waiting up to ``within`` seconds."""
    return {p.pid for p in wait_gone(lambda: processes.left_by(proc), within)}


def _start(processes: Processes, argv: list[str], home: Path, cwd: Path, **popen: Any) -> Any:
    quiet = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
    }
    return processes.start(argv, env=_env(home), cwd=cwd, **{**quiet, **popen})


def _pids(folder: Path) -> set[int]:
    return {int(p.read_text()) for p in folder.glob("*.pid") if p.read_text().strip()}


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PHLOEM_HOME": str(home), "PHLOEM_WORKERS": "2"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(phloem.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    return env


# -- 2: a shell command dies at its task's timeout -------------------------------------------------


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_a_shell_command_dies_at_its_timeout(executor: str, home: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()

    @pipeline
    def slow() -> None:
        # /bin/sh forks the sleep: killing the shell alone leaves it running
        shell(f"sleep 473 & echo $! > {pids}/sleep.pid; wait", timeout=2, name="slow")

    try:
        r = phloem.run(slow, executor=executor, workers=1)
        assert r.tasks[("slow", -1)].state is TaskState.FAILED
        left = _pids(pids)
        assert left, "the command never started"
        assert survivors(left) == set()
    finally:
        _kill_all(_pids(pids))


def test_a_task_subprocess_in_a_new_session_dies_at_the_task_timeout(
    home: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()

    @phloem.task(timeout=2)
    def escapes(folder: str) -> None:
        import subprocess as sp

        p = sp.Popen(["sleep", "474"], start_new_session=True)
        Path(folder, "sleep.pid").write_text(str(p.pid))
        p.wait()

    @pipeline
    def flow() -> None:
        escapes(str(pids))

    try:
        r = phloem.run(flow, executor="local", workers=1)
        assert r.tasks[("escapes", -1)].state is TaskState.FAILED
        left = _pids(pids)
        assert left, "the task never started its subprocess"
        assert survivors(left) == set()
    finally:
        _kill_all(_pids(pids))


# -- what an attempt orphans is gone before its result is reported -----------------------------


@phloem.task(retries=1, retry_delay=0)
def orphans_then_checks(folder: str) -> str:
    """Try 1 leaves a sleep behind (its shell exits at once) and fails; try 2 looks at it."""
    import subprocess as sp

    ctx = phloem.context()
    if ctx.try_number == 1:
        sp.run(f"sleep 475 & echo $! > {folder}/orphan.pid", shell=True, check=True)
        raise RuntimeError("first try fails")
    return "overlap" if _alive(int(Path(folder, "orphan.pid").read_text())) else "clean"


@phloem.task
def orphans(folder: str) -> None:
    import subprocess as sp

    sp.run(f"sleep 476 & echo $! > {folder}/left.pid", shell=True, check=True)


@phloem.task
def looks(folder: str, _after: None) -> str:
    return "overlap" if _alive(int(Path(folder, "left.pid").read_text())) else "clean"


@phloem.task
def keeps_a_pool(_after: None) -> list[int]:
    import multiprocessing as mp

    with mp.get_context("fork").Pool(2) as pool:  # a worker may start processes of its own
        return pool.map(abs, [-1, -2])


@pytest.mark.parametrize("workers", [1, 2])
def test_an_attempts_orphans_are_gone_before_the_next_attempt(
    workers: int, home: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()

    @pipeline
    def flow() -> None:
        orphans_then_checks(str(pids))
        keeps_a_pool(looks(str(pids), orphans(str(pids))))

    try:
        r = phloem.run(flow, executor="local", workers=workers)
        assert r.succeeded, {k: ti.error for k, ti in r.tasks.items()}
        assert r.output("orphans_then_checks") == "clean"
        assert r.output("looks") == "clean"
        assert r.output("keeps_a_pool") == [1, 2]
    finally:
        _kill_all(_pids(pids))


# -- 3: SIGKILL of `phloem run` ------------------------------------------------------------------

RUN_PIPELINE = textwrap.dedent(
    """
    import subprocess
    from pathlib import Path
    from phloem import pipeline, task

    @task
    def hold(folder: str, name: str, new_session: bool) -> None:
        p = subprocess.Popen(["sleep", "600"], start_new_session=new_session)
        Path(folder, name + ".pid").write_text(str(p.pid))
        p.wait()

    @pipeline
    def holding(folder: str = "") -> None:
        hold(folder, "plain", False)
        hold(folder, "session", True)
    """
)


def test_sigkill_of_phloem_run_leaves_no_task_subprocess(
    home: Path, tmp_path: Path, processes: Processes
) -> None:
    (tmp_path / "holding.py").write_text(RUN_PIPELINE)
    pids = tmp_path / "pids"
    pids.mkdir()
    argv = [sys.executable, "-m", "phloem", "run", "holding.py", "-p", f"folder={pids}"]
    proc = _start(processes, argv, home, tmp_path)
    assert wait_until(lambda: len(_pids(pids)) == 2), "the tasks never started"
    below = descendants(proc.pid)
    assert _pids(pids) <= below  # the sleeps run below the driver, with its workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert left(processes, proc) == set()


# -- 4 and 5: SIGKILL of `phloem scheduler` --------------------------------------------------------

SCHEDULED = textwrap.dedent(
    """
    from phloem import pipeline, task

    @task
    def one() -> int:
        return 1

    @pipeline
    def listed() -> None:
        one()
    """
)


def _scheduler(home: Path, tmp_path: Path) -> tuple[list[str], Callable[[], bool]]:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "listed.py").write_text(SCHEDULED)
    argv = [sys.executable, "-m", "phloem", "scheduler", "--pipelines", str(folder)]

    def parsed() -> bool:
        from phloem.store import SqlStore
        from phloem.store.catalog import Catalog

        db = home / "phloem.db"
        if not db.exists():
            return False
        store = SqlStore(f"sqlite:///{db}")
        try:
            return any(p.info.name == "listed" for p in Catalog(store).pipelines())
        except Exception:  # not migrated yet
            return False
        finally:
            store.close()

    return argv, parsed


def test_sigkill_of_a_scheduler_leaves_no_parser(
    home: Path, tmp_path: Path, processes: Processes
) -> None:
    argv, parsed = _scheduler(home, tmp_path)
    proc = _start(processes, argv, home, tmp_path)
    assert wait_until(parsed), "the scheduler never read its folder"
    assert descendants(proc.pid), "no parser process below the scheduler"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert left(processes, proc) == set()


GATED = textwrap.dedent(
    """
    import time
    from pathlib import Path
    from phloem import pipeline, task

    @task
    def wait(gate: str) -> str:
        while not Path(gate).exists():
            time.sleep(0.02)
        return "through"

    @pipeline
    def gated(gate: str = "") -> None:
        wait(gate)
    """
)


def test_a_scheduler_takes_over_at_once_from_one_sigkilled_on_this_machine(
    home: Path, tmp_path: Path, processes: Processes
) -> None:
    from phloem.app import Phloem
    from phloem.scheduler import Scheduler, SchedulerConfig
    from phloem.scheduler.commands import trigger

    argv, parsed = _scheduler(home, tmp_path)
    (tmp_path / "pipelines" / "gated.py").write_text(GATED)
    env = _env(home)
    env["PHLOEM_LEASE_TTL"] = "600"  # its lock and runs stay its own for ten minutes
    proc = processes.start(argv, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    assert wait_until(parsed), "the scheduler never read its folder"
    store = Phloem.open().store
    gate = tmp_path / "gate"
    run, _ = trigger(Phloem.open(), "gated", params={"gate": str(gate)})

    def running() -> bool:
        return any(ti.state.value == "running" for ti in store.load_instances(run.run_id))

    assert wait_until(running), "the killed scheduler never started the task"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert left(processes, proc) == set()
    killed = store.get_run(run.run_id).owner
    assert killed is not None and killed.startswith("scheduler:")

    sched = Scheduler(Phloem.open(), SchedulerConfig(folder=tmp_path / "pipelines", tick=0.05))
    sched.start()  # refused before: "another scheduler ... already runs"
    try:
        # its run is taken now, not in ten minutes
        assert wait_until(lambda: (sched.step(), run.run_id in sched.loop.sessions)[1])
        gate.write_text("open")
        assert wait_until(lambda: (sched.step(), store.get_run(run.run_id).state.is_terminal)[1])
    finally:
        sched.shutdown()
    assert store.get_run(run.run_id).state.value == "success"
    assert [a.state for a in store.attempts(run.run_id)][-1] == "success"


# -- the guard itself ----------------------------------------------------------------------------

SPAWN_FROM_A_THREAD = textwrap.dedent(
    """
    import sys, threading, time
    from phloem.executors.lifetime import start_child

    def echo(conn):
        while True:
            msg = conn.recv()
            conn.send(msg)

    kept = []
    t = threading.Thread(target=lambda: kept.append(start_child(echo, (), "phloem-test")))
    t.start()
    t.join()  # the thread that forked the child is gone; the process is not
    child, conn = kept[0]
    time.sleep(0.5)
    conn.send("still there?")
    assert conn.poll(10) and conn.recv() == "still there?"
    print(child.pid, child.child_pid, flush=True)
    time.sleep(600)
    """
)


def test_a_child_outlives_the_thread_that_forked_it_but_not_its_owner(
    home: Path, tmp_path: Path, processes: Processes
) -> None:
    argv = [sys.executable, "-c", SPAWN_FROM_A_THREAD]
    proc = _start(processes, argv, home, tmp_path, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, "the owner failed before its child answered"
    pair = {int(p) for p in line.split()}
    assert pair == descendants(proc.pid) and all(_alive(p) for p in pair)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert left(processes, proc) == set()


def _daemonize(conn: Any, folder: str) -> None:
    """Start a sleep that forks away twice (its parent exits), then wait for orders (and exit
    when given one, leaving the sleep behind)."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            Path(folder, "daemon.pid").write_text(str(os.getpid()))
            time.sleep(600)
        os._exit(0)
    conn.recv()


def test_stopping_a_child_kills_what_it_daemonized(tmp_path: Path) -> None:
    from phloem.executors.lifetime import start_child

    child, conn = start_child(_daemonize, (str(tmp_path),), "phloem-test")
    try:
        assert wait_until(lambda: bool(_pids(tmp_path)), 10), "the daemon never started"
        daemon = _pids(tmp_path)
        assert all(_alive(p) for p in daemon)
        # once the process between them exits, the guard adopts the daemon (not init)
        assert wait_until(lambda: {(_stat(p) or ("", 0))[1] for p in daemon} == {child.pid}, 10)
        child.stop()
        assert not child.is_alive()
        assert survivors(daemon) == set()
    finally:
        _kill_all(_pids(tmp_path))
        child.stop()
        conn.close()


def _until_eof(conn: Any, folder: str) -> None:
    try:
        conn.recv()
    except EOFError:
        Path(folder, f"eof-{os.getpid()}").write_text("")


def test_a_child_reads_end_of_file_once_its_owner_closes_its_end(tmp_path: Path) -> None:
    from phloem.executors.lifetime import start_child

    first, first_end = start_child(_until_eof, (str(tmp_path),), "phloem-test")
    second, second_end = start_child(_until_eof, (str(tmp_path),), "phloem-test")
    try:
        first_end.close()  # the second child must not hold a copy of this end
        first.join(10)
        assert first.exitcode == 0
        assert (tmp_path / f"eof-{first.child_pid}").exists()
        assert second.is_alive()
    finally:
        for child, end in ((first, first_end), (second, second_end)):
            child.stop()
            end.close()


def _starts_its_own(conn: Any) -> None:
    from phloem.executors.lifetime import start_child

    inner, inner_end = start_child(_echo, (), "phloem-test")
    inner_end.send("nested")
    conn.send(inner_end.recv() if inner_end.poll(10) else None)
    inner.stop()


def _echo(conn: Any) -> None:
    conn.send(conn.recv())


def test_a_child_may_start_guarded_children_of_its_own(tmp_path: Path) -> None:
    from phloem.executors.lifetime import start_child

    child, end = start_child(_starts_its_own, (), "phloem-test")
    try:
        assert end.poll(20) and end.recv() == "nested"
    finally:
        child.stop()
        end.close()


def test_a_child_that_exits_takes_what_it_daemonized_with_it(tmp_path: Path) -> None:
    from phloem.executors.lifetime import start_child

    child, conn = start_child(_daemonize, (str(tmp_path),), "phloem-test")
    try:
        assert wait_until(lambda: bool(_pids(tmp_path)), 10), "the daemon never started"
        daemon = _pids(tmp_path)
        assert wait_until(lambda: {(_stat(p) or ("", 0))[1] for p in daemon} == {child.pid}, 10)
        conn.send("exit")
        child.join(10)
        assert child.exitcode == 0
        assert {p for p in daemon if _alive(p)} == set()  # gone by the time the guard is
    finally:
        _kill_all(_pids(tmp_path))
        child.stop()
        conn.close()


REAP_TREE = """
import os, sys
from phloem.executors import guard
scans = []
guard.kill_tree = lambda root: scans.append(root)
guard._reap_tree(os.getpid())  # no child: nothing can be below
alone = len(scans)
pid = os.fork()
if pid == 0:
    os._exit(0)
while open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
    pass
guard._reap_tree(os.getpid())  # a child (a zombie): the tree is looked for, the child reaped
print(alone, len(scans), os.path.exists(f"/proc/{pid}"))
"""


def test_a_guard_with_no_child_left_does_not_scan_for_its_tree(tmp_path: Path) -> None:
    """A guard whose child exited and was reaped has nothing below it: it exits without the
    scan of /proc that looks for the tree (its owner waits for that exit)."""
    env = _env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", REAP_TREE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "1", "False"]

"""decide() driven through whole runs on a fake clock: branches, retries, timeouts, sensors,
mapping, stale reports, capacity and pools, and the run's final state."""

from __future__ import annotations

import pytest

from phloem import pipeline, sensor, task
from phloem.engine import Capacity, Verdict, decide
from phloem.engine.retry import retry_delay
from phloem.states import RunState, TaskState
from strategies import Sim

S = TaskState


def _noop(*args: object, **kwargs: object) -> None:
    return None


# -- tasks shared by the pipelines below --------------------------------------------------------


@task
def extract() -> list[int]:
    return [1, 2, 3]


@task
def load(x: object = None) -> None:
    return None


@task
def report(x: object = None) -> None:
    return None


@task.branch
def choose() -> str:
    return "left"


@task
def left() -> None:
    return None


@task
def right() -> None:
    return None


@task
def after_left(x: object = None) -> None:
    return None


@task(trigger_rule="none_failed_min_one_success")
def join() -> None:
    return None


@task
def square(x: int, k: int = 1) -> int:
    return x * x * k


@task
def pair(x: int, y: str) -> str:
    return f"{y}{x}"


@task
def total(xs: list[int]) -> int:
    return sum(xs)


# -- branches -------------------------------------------------------------------------------------


@pipeline
def branching() -> None:
    c = choose()
    lf = left()
    rt = right()
    c >> [lf, rt]
    al = after_left(lf)
    j = join()
    [al, rt] >> j


def test_branch_follows_one_path_and_skips_the_other() -> None:
    sim = Sim.of(branching)
    d = sim.step()
    assert d.run_state is RunState.RUNNING
    assert sim.state("choose") is S.QUEUED
    assert sim.state("left") is S.PENDING
    sim.run_attempt("choose", follow=("right",))
    # the unchosen branch is skipped, and the skip runs through all_success at once
    assert sim.state("left") is S.SKIPPED
    assert sim.state("after_left") is S.SKIPPED
    assert sim.state("right") is S.QUEUED
    assert sim.state("join") is S.PENDING  # waits for the chosen path
    sim.run_attempt("right")
    assert sim.state("join") is S.QUEUED  # none_failed_min_one_success: a skip does not block it
    sim.run_attempt("join")
    assert sim.run_state is RunState.SUCCESS
    assert sim.states() == {
        "after_left": "skipped",
        "choose": "success",
        "join": "success",
        "left": "skipped",
        "right": "success",
    }


def test_branch_choosing_nothing_skips_everything_after_it() -> None:
    sim = Sim.of(branching)
    sim.step()
    sim.run_attempt("choose", follow=())
    assert {k: v for k, v in sim.states().items() if k != "choose"} == {
        "after_left": "skipped",
        "join": "skipped",
        "left": "skipped",
        "right": "skipped",
    }
    assert sim.run_state is RunState.SUCCESS


def test_branch_choosing_both_runs_both() -> None:
    sim = Sim.of(branching)
    sim.step()
    sim.run_attempt("choose", follow=("left", "right"))
    assert sim.state("left") is S.QUEUED
    assert sim.state("right") is S.QUEUED
    sim.run_attempt("left")
    sim.run_attempt("right")
    assert sim.state("after_left") is S.QUEUED
    assert sim.state("join") is S.PENDING
    sim.run_attempt("after_left")
    sim.run_attempt("join")
    assert sim.run_state is RunState.SUCCESS


def test_failed_branch_fails_its_downstream() -> None:
    sim = Sim.of(branching)
    sim.step()
    sim.run_attempt("choose", "failed", error="boom")
    assert sim.state("left") is S.UPSTREAM_FAILED
    assert sim.state("after_left") is S.UPSTREAM_FAILED
    assert sim.state("join") is S.UPSTREAM_FAILED
    assert sim.run_state is RunState.FAILED


def test_join_after_the_chosen_task_is_not_skipped() -> None:
    """Airflow's branching: a task downstream of both the branch and a chosen task is not
    skipped (``branch >> [work, join]; work >> join``, the branch returns "work")."""

    @pipeline
    def p() -> None:
        c = choose()
        w = left.with_options(name="work")()
        j = join()
        c >> [w, j]
        w >> j

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("choose", follow=("work",))
    assert sim.state("join") is S.PENDING
    sim.run_attempt("work")
    assert sim.state("join") is S.QUEUED


def test_mapped_branch_is_refused() -> None:
    """One run follows one set of paths: a branch task cannot be mapped."""
    from phloem.errors import DefinitionError

    @task.branch
    def pick(x: int) -> str:
        return "left"

    with pytest.raises(DefinitionError, match="cannot be mapped"):

        @pipeline
        def p() -> None:
            pick.expand(x=[1, 2]) >> [left(), right()]


def test_skip_seen_before_a_failure_skips_all_success() -> None:
    """As in Airflow: all_success skips at the first skipped upstream, and a later failure of
    another upstream does not change it; the run's state follows the (skipped) leaf."""

    @pipeline
    def p() -> None:
        a = load.with_options(name="a")()
        b = load.with_options(name="b")()
        [a, b] >> report()

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("a", "skip")
    assert sim.state("report") is S.SKIPPED
    sim.run_attempt("b", "failed")
    assert sim.state("report") is S.SKIPPED
    assert sim.run_state is RunState.SUCCESS


# -- retries --------------------------------------------------------------------------------------


@task(retries=4, retry_delay=10, retry_backoff=2, max_retry_delay=30)
def flaky() -> None:
    return None


@pipeline
def retrying() -> None:
    load(flaky())


def test_retries_back_off_exponentially_up_to_the_cap() -> None:
    sim = Sim.of(retrying)
    sim.step()
    for n, expected in enumerate([10.0, 20.0, 30.0, 30.0], start=1):
        assert sim.state("flaky") is S.QUEUED
        assert sim.ti("flaky").try_number == n
        failed_at = sim.now
        d = sim.run_attempt("flaky", "failed", error=f"error {n}")
        ti = sim.ti("flaky")
        assert ti.state is S.UP_FOR_RETRY
        assert ti.next_try_at is not None
        assert ti.next_try_at - failed_at == pytest.approx(expected)
        assert ti.next_try_at - failed_at == pytest.approx(min(30.0, 10.0 * 2 ** (n - 1)))
        assert ti.error == f"error {n}"
        assert d.wake_at == ti.next_try_at
        assert sim.state("load") is S.PENDING
        # nothing happens before the next try is due
        assert sim.step(at=ti.next_try_at - 0.5).empty
        assert sim.state("flaky") is S.UP_FOR_RETRY
        sim.step(at=ti.next_try_at)
    # the last try (1 + 4 retries) fails for good
    assert sim.ti("flaky").try_number == 5
    sim.run_attempt("flaky", "failed", error="final")
    assert sim.state("flaky") is S.FAILED
    assert sim.ti("flaky").error == "final"
    assert sim.state("load") is S.UPSTREAM_FAILED
    assert sim.run_state is RunState.FAILED
    assert sim.transitions_of("flaky").count(("up_for_retry", "scheduled")) == 4


def test_retry_after_failures_then_success() -> None:
    sim = Sim.of(retrying)
    sim.step()
    sim.run_attempt("flaky", "failed")
    sim.step(at=sim.ti("flaky").next_try_at)
    sim.run_attempt("flaky")
    assert sim.state("flaky") is S.SUCCESS
    assert sim.ti("flaky").error is None
    assert sim.state("load") is S.QUEUED


def test_not_retryable_failure_fails_at_once() -> None:
    sim = Sim.of(retrying)
    sim.step()
    sim.run_attempt("flaky", "failed", error="bad input", retryable=False)
    assert sim.state("flaky") is S.FAILED
    assert sim.state("load") is S.UPSTREAM_FAILED
    assert sim.run_state is RunState.FAILED


def test_zero_delay_retry_is_queued_in_the_same_decision() -> None:
    @pipeline
    def quick() -> None:
        load.with_options(retries=1)()

    sim = Sim.of(quick)
    sim.step()
    sim.run_attempt("load", "failed")
    assert sim.state("load") is S.QUEUED
    assert sim.ti("load").try_number == 2
    assert sim.transitions_of("load")[-3:] == [
        ("running", "up_for_retry"),
        ("up_for_retry", "scheduled"),
        ("scheduled", "queued"),
    ]


@task(retries=6, retry_delay=8, retry_backoff=3, max_retry_delay=100, retry_jitter=0.5)
def jittery() -> None:
    return None


@pipeline
def jittering() -> None:
    jittery()


@pytest.mark.parametrize("run_id", ["a", "b", "c", "run-4", "run-5"])
def test_jitter_stays_within_its_bounds(run_id: str) -> None:
    sim = Sim.of(jittering, run_id=run_id)
    sim.step()
    delays = []
    for n in range(1, 7):
        failed_at = sim.now
        sim.run_attempt("jittery", "failed")
        ti = sim.ti("jittery")
        assert ti.next_try_at is not None
        delay = ti.next_try_at - failed_at
        full = min(100.0, 8.0 * 3 ** (n - 1))
        assert full * 0.5 <= delay <= full, (n, delay)
        delays.append(delay)
        sim.step(at=ti.next_try_at)
    # deterministic: the same run and try give the same delay
    again = Sim.of(jittering, run_id=run_id)
    again.step()
    again.run_attempt("jittery", "failed")
    assert again.ti("jittery").next_try_at - again.now == pytest.approx(delays[0])


def test_retry_delay_function() -> None:
    opts = jittery.options
    for n in range(1, 10):
        full = min(100.0, 8.0 * 3 ** (n - 1))
        d = retry_delay(opts, n, seed="x")
        assert full * 0.5 <= d <= full
        assert retry_delay(opts, n, seed="x") == d
    plain = flaky.options
    assert [retry_delay(plain, n) for n in range(1, 6)] == [10, 20, 30, 30, 30]


# -- timeouts -------------------------------------------------------------------------------------


@task(timeout=30, retries=1)
def slow() -> None:
    return None


@pipeline
def timing_out() -> None:
    report(slow())


def test_running_attempt_past_its_timeout_is_killed_and_retried() -> None:
    sim = Sim.of(timing_out)
    sim.step()
    d = sim.step(sim.started("slow"))
    t0 = sim.now
    assert d.wake_at == t0 + 30
    assert sim.step(at=t0 + 29.9).kills == ()
    d = sim.step(at=t0 + 30)
    assert len(d.kills) == 1
    kill = d.kills[0]
    assert kill.key == ("slow", -1)
    assert kill.try_number == 1
    assert "timed out" in kill.reason
    # first try timed out: a retry (no delay) is queued at once
    assert sim.transitions_of("slow")[-3] == ("running", "up_for_retry")
    assert "timed out" in (sim.history[-3][1].new.error or "")
    assert sim.state("slow") is S.QUEUED
    assert sim.ti("slow").try_number == 2
    # a late report from the killed attempt changes nothing
    assert sim.step(sim.finished("slow", try_number=1)).empty
    # the second try times out too: failed for good
    sim.step(sim.started("slow"), at=t0 + 40)
    d = sim.step(at=t0 + 70)
    assert [k.try_number for k in d.kills] == [2]
    assert sim.state("slow") is S.FAILED
    assert "timed out after 30s" in (sim.ti("slow").error or "")
    assert sim.state("report") is S.UPSTREAM_FAILED
    assert sim.run_state is RunState.FAILED


def test_queued_attempt_that_never_started_has_no_timeout_yet() -> None:
    sim = Sim.of(timing_out)
    sim.step()
    d = sim.step(at=sim.now + 1000)
    assert d.kills == ()
    assert sim.state("slow") is S.QUEUED


def test_finishing_just_before_the_timeout_wins() -> None:
    sim = Sim.of(timing_out)
    sim.step()
    sim.step(sim.started("slow"))
    t0 = sim.now
    d = sim.step(sim.finished("slow", at=t0 + 29), at=t0 + 31)
    assert d.kills == ()
    assert sim.state("slow") is S.SUCCESS


# -- sensors --------------------------------------------------------------------------------------


@sensor(poke_interval=5, timeout=20, mode="reschedule")
def wait_for_file() -> bool:
    return False


@sensor(poke_interval=5, timeout=20, mode="reschedule", soft_fail=True)
def maybe_file() -> bool:
    return False


@pipeline
def sensing() -> None:
    report(wait_for_file())


@pipeline
def soft_sensing() -> None:
    report(maybe_file())


def test_sensor_reschedules_until_its_condition_holds() -> None:
    sim = Sim.of(sensing)
    sim.step()
    t0 = sim.now
    for poke in range(1, 4):
        assert sim.state("wait_for_file") is S.QUEUED
        assert sim.ti("wait_for_file").try_number == poke
        d = sim.run_attempt("wait_for_file", "reschedule")
        ti = sim.ti("wait_for_file")
        assert ti.state is S.UP_FOR_RESCHEDULE
        assert ti.next_try_at == sim.now + 5
        assert d.wake_at == sim.now + 5
        assert sim.step(at=sim.now + 4).empty
        sim.step(at=ti.next_try_at)  # back to scheduled at poke time, and queued
        assert sim.transitions_of("wait_for_file")[-2:] == [
            ("up_for_reschedule", "scheduled"),
            ("scheduled", "queued"),
        ]
    assert sim.now == t0 + 15
    sim.run_attempt("wait_for_file")
    assert sim.state("wait_for_file") is S.SUCCESS
    assert sim.state("report") is S.QUEUED


def test_sensor_timeout_fails_it() -> None:
    sim = Sim.of(sensing)
    sim.step()
    t0 = sim.now
    while sim.state("wait_for_file") is not S.FAILED:
        assert sim.now - t0 <= 20
        sim.run_attempt("wait_for_file", "reschedule")
        ti = sim.ti("wait_for_file")
        if ti.state is S.UP_FOR_RESCHEDULE:
            assert ti.next_try_at is not None
            sim.step(at=ti.next_try_at)
    assert sim.now - t0 == 20
    assert "timed out" in (sim.ti("wait_for_file").error or "")
    assert sim.state("report") is S.UPSTREAM_FAILED
    assert sim.run_state is RunState.FAILED


def test_sensor_timeout_reported_by_the_worker() -> None:
    sim = Sim.of(sensing)
    sim.step()
    sim.run_attempt("wait_for_file", "sensor_timeout")
    assert sim.state("wait_for_file") is S.FAILED
    assert "timed out" in (sim.ti("wait_for_file").error or "")


def test_soft_fail_sensor_is_skipped_on_timeout() -> None:
    sim = Sim.of(soft_sensing)
    sim.step()
    sim.run_attempt("maybe_file", "reschedule")
    sim.step(at=sim.now + 25)
    sim.run_attempt("maybe_file", "reschedule")
    assert sim.state("maybe_file") is S.SKIPPED
    assert sim.state("report") is S.SKIPPED
    assert sim.run_state is RunState.SUCCESS


def test_reschedules_do_not_use_up_retries() -> None:
    @pipeline
    def p() -> None:
        wait_for_file.with_options(retries=1, timeout=1000)()

    sim = Sim.of(p)
    sim.step()
    for _ in range(5):
        sim.run_attempt("wait_for_file", "reschedule")
        sim.step(at=sim.ti("wait_for_file").next_try_at)
    sim.run_attempt("wait_for_file", "failed")
    assert sim.transitions_of("wait_for_file")[-3][1] == "up_for_retry"  # the 1 retry
    assert sim.state("wait_for_file") is S.QUEUED  # no retry delay: queued at once
    assert sim.ti("wait_for_file").try_number == 7
    sim.run_attempt("wait_for_file", "failed")
    assert sim.state("wait_for_file") is S.FAILED


# -- mapping --------------------------------------------------------------------------------------


def _finish_all(sim: Sim, task_id: str, outcome: str = "success") -> None:
    for key in sim.keys_in(S.QUEUED, S.RUNNING):
        if key[0] == task_id:
            sim.run_attempt(task_id, outcome, key[1])


def test_expand_over_a_literal_list() -> None:
    @pipeline
    def p() -> None:
        total(square.expand(x=[1, 2, 3]))

    sim = Sim.of(p)
    d = sim.step()
    assert [(e.placeholder.key, e.count) for e in d.expansions] == [(("square", -1), 3)]
    assert sim.keys_in(S.QUEUED) == [("square", 0), ("square", 1), ("square", 2)]
    assert ("square", -1) not in sim.snap.tis
    sim.run_attempt("square", map_index=0)
    sim.run_attempt("square", map_index=2)
    assert sim.state("total") is S.PENDING  # reads the whole list
    sim.run_attempt("square", map_index=1)
    assert sim.state("total") is S.QUEUED
    sim.run_attempt("total")
    assert sim.run_state is RunState.SUCCESS


def test_expand_over_an_upstream_output() -> None:
    @pipeline
    def p() -> None:
        total(square.partial(k=2).expand(x=extract()))

    sim = Sim.of(p)
    sim.step()
    assert sim.state("square") is S.PENDING
    d = sim.run_attempt("extract", map_length=4)
    assert [e.count for e in d.expansions] == [4]
    assert len(sim.keys_in(S.QUEUED)) == 4
    _finish_all(sim, "square")
    sim.run_attempt("total")
    assert sim.run_state is RunState.SUCCESS


def test_expand_over_a_value_that_is_not_a_list_fails() -> None:
    @pipeline
    def p() -> None:
        square.expand(x=extract())

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("extract", map_length=None)
    assert sim.state("square") is S.FAILED
    assert "did not return a list" in (sim.ti("square").error or "")
    assert sim.run_state is RunState.FAILED


@pytest.mark.parametrize("how", ["literal", "upstream"])
def test_expand_over_an_empty_list_is_skipped(how: str) -> None:
    @pipeline
    def p() -> None:
        src = [] if how == "literal" else extract()
        total(square.expand(x=src))

    sim = Sim.of(p)
    sim.step()
    if how == "upstream":
        sim.run_attempt("extract", map_length=0)
    assert sim.state("square") is S.SKIPPED
    assert [k for k in sim.snap.tis if k[0] == "square"] == [("square", -1)]
    assert sim.state("total") is S.SKIPPED
    assert sim.run_state is RunState.SUCCESS


def test_expand_over_a_failed_upstream_is_upstream_failed() -> None:
    @pipeline
    def p() -> None:
        square.expand(x=extract())

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("extract", "failed")
    assert sim.state("square") is S.UPSTREAM_FAILED
    assert sim.run_state is RunState.FAILED


def test_expand_over_a_skipped_upstream_with_all_done_is_skipped() -> None:
    @pipeline
    def p() -> None:
        square.with_options(trigger_rule="all_done").expand(x=extract())

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("extract", "skip")
    assert sim.state("square") is S.SKIPPED


def test_cross_product_of_two_keywords() -> None:
    @pipeline
    def p() -> None:
        report(pair.expand(x=[1, 2], y=["a", "b", "c"]))

    sim = Sim.of(p)
    d = sim.step()
    assert [e.count for e in d.expansions] == [6]
    assert sorted(k[1] for k in sim.keys_in(S.QUEUED)) == list(range(6))


def test_expand_over_a_parameter() -> None:
    @pipeline
    def p(items: list = [1, 2]) -> None:  # noqa: B006
        square.expand(x=items)

    assert len(Sim.of(p).step().expansions[0].placeholder.task_id) > 0
    sim = Sim.of(p, params={"items": [5, 6, 7, 8, 9]})
    assert [e.count for e in sim.step().expansions] == [5]


def test_mapped_of_mapped() -> None:
    @pipeline
    def p() -> None:
        total(square.with_options(name="again").expand(x=square.expand(x=[1, 2, 3])))

    sim = Sim.of(p)
    sim.step()
    assert sim.state("again") is S.PENDING
    _finish_all(sim, "square")
    assert sorted(k for k in sim.keys_in(S.QUEUED)) == [("again", 0), ("again", 1), ("again", 2)]
    _finish_all(sim, "again")
    sim.run_attempt("total")
    assert sim.run_state is RunState.SUCCESS


def test_failed_mapped_instance_fails_the_downstream() -> None:
    @pipeline
    def p() -> None:
        m = square.expand(x=[1, 2, 3])
        total.with_options(name="mm").expand(xs=m)
        total(m)

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("square", map_index=0)
    sim.run_attempt("square", "failed", map_index=1)
    assert sim.state("total") is S.UPSTREAM_FAILED  # all_success decides at the first failure
    assert sim.state("mm") is S.UPSTREAM_FAILED
    sim.run_attempt("square", map_index=2)
    assert sim.run_state is RunState.FAILED


def test_mapped_instances_retry_one_by_one() -> None:
    @pipeline
    def p() -> None:
        square.with_options(retries=1, retry_delay=5).expand(x=[1, 2])

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("square", "failed", map_index=1)
    assert sim.state("square", 1) is S.UP_FOR_RETRY
    assert sim.state("square", 0) is S.QUEUED
    sim.step(at=sim.now + 5)
    assert sim.ti("square", 1).try_number == 2


# -- stale and duplicate reports ------------------------------------------------------------------


def test_report_of_an_old_try_changes_nothing() -> None:
    sim = Sim.of(retrying)
    sim.step()
    sim.run_attempt("flaky", "failed")
    sim.step(at=sim.ti("flaky").next_try_at)
    sim.step(sim.started("flaky"))
    assert sim.ti("flaky").try_number == 2
    before = dict(sim.snap.tis)
    for outcome in ("success", "failed", "skip", "reschedule"):
        d = sim.step(sim.finished("flaky", outcome, try_number=1))
        assert d.empty, outcome
    from phloem.engine import AttemptStarted

    assert sim.step(AttemptStarted(("flaky", -1), 1, sim.now)).empty
    assert sim.snap.tis == before


def test_duplicate_success_changes_nothing() -> None:
    sim = Sim.of(retrying)
    sim.step()
    ev = [sim.started("flaky"), sim.finished("flaky", output="v1")]
    sim.step(*ev)
    assert sim.state("flaky") is S.SUCCESS
    before = dict(sim.snap.tis)
    d = sim.step(*ev)
    assert not d.transitions
    d = sim.step(sim.finished("flaky", "failed", try_number=1))
    assert not d.transitions
    assert sim.snap.tis == before
    assert sim.ti("flaky").output == "v1"


def test_report_for_an_unknown_instance_is_ignored() -> None:
    from phloem.engine import AttemptFinished

    sim = Sim.of(retrying)
    sim.step()
    assert sim.step(AttemptFinished(("nope", -1), 1, "success", sim.now)).empty
    assert sim.step(AttemptFinished(("flaky", 7), 1, "success", sim.now)).empty


def test_start_after_finish_in_one_batch_is_ignored() -> None:
    sim = Sim.of(retrying)
    sim.step()
    sim.step(sim.finished("flaky"), sim.started("flaky"))
    assert sim.state("flaky") is S.SUCCESS


def test_a_terminal_run_decides_nothing() -> None:
    sim = Sim.of(retrying)
    sim.step()
    sim.run_attempt("flaky", "failed", retryable=False)
    assert sim.run_state is RunState.FAILED
    assert sim.step(at=sim.now + 1000).empty


# -- capacity, pools, priorities ------------------------------------------------------------------


def _fan(n: int, **opts: object):  # type: ignore[no-untyped-def]
    @pipeline(name=f"fan{n}")
    def p() -> None:
        for i in range(n):
            load.with_options(name=f"t{i}", **opts)()

    return p


def test_never_more_active_than_slots() -> None:
    sim = Sim.of(_fan(10), slots=3)
    sim.step()
    assert sim.keys_in(S.QUEUED) == [("t0", -1), ("t1", -1), ("t2", -1)]  # first come first
    sim.step(sim.started("t0"), sim.started("t1"))
    assert sim.active == 3
    sim.step(sim.finished("t1"))
    assert sim.active == 3
    assert sim.state("t3") is S.QUEUED
    done = 1
    while sim.run_state is not RunState.SUCCESS:
        key = sim.keys_in(S.QUEUED, S.RUNNING)[0]
        sim.run_attempt(key[0])
        done += 1
        assert sim.active == min(3, 10 - done)
    assert done == 10


def test_capacity_zero_queues_nothing() -> None:
    sim = Sim.of(_fan(2))
    d = decide(sim.snap, sim.now, (), Capacity(slots=0))
    assert not [t for t in d.transitions if t.new.state is S.QUEUED]
    assert d.run_state is RunState.RUNNING


def test_max_active_tasks_of_the_pipeline() -> None:
    @pipeline(max_active_tasks=2)
    def p() -> None:
        for i in range(5):
            load.with_options(name=f"t{i}")()

    sim = Sim.of(p, slots=4)
    sim.step()
    assert sim.active == 2
    sim.run_attempt("t0")
    assert sim.active == 2


def test_pool_slots_are_respected() -> None:
    @pipeline
    def p() -> None:
        for i in range(4):
            load.with_options(name=f"gpu{i}", pool="gpu", pool_slots=2)()
        for i in range(3):
            load.with_options(name=f"cpu{i}", pool="cpu")()
        load.with_options(name="free")()

    sim = Sim.of(p, pools={"gpu": 5, "cpu": 2})
    sim.step()
    queued = {k[0] for k in sim.keys_in(S.QUEUED)}
    assert queued == {"gpu0", "gpu1", "cpu0", "cpu1", "free"}  # 2+2 of 5 gpu slots; 2 cpu
    sim.run_attempt("gpu0")
    assert sim.state("gpu2") is S.QUEUED
    assert sim.state("gpu3") is S.SCHEDULED
    sim.run_attempt("cpu1")
    assert sim.state("cpu2") is S.QUEUED


def test_higher_priority_first() -> None:
    @pipeline
    def p() -> None:
        load.with_options(name="low", priority=1)()
        load.with_options(name="high", priority=10)()
        load.with_options(name="mid", priority=5)()
        load.with_options(name="mid2", priority=5)()

    sim = Sim.of(p, slots=1)
    order = []
    sim.step()
    while sim.run_state is not RunState.SUCCESS:
        (key,) = sim.keys_in(S.QUEUED)
        order.append(key[0])
        sim.run_attempt(key[0])
    assert order == ["high", "mid", "mid2", "low"]


def test_priority_with_pools() -> None:
    @pipeline
    def p() -> None:
        load.with_options(name="a", pool="p", priority=1)()
        load.with_options(name="b", pool="p", priority=3)()
        load.with_options(name="c", pool="p", priority=2)()

    sim = Sim.of(p, pools={"p": 1})
    sim.step()
    assert sim.keys_in(S.QUEUED) == [("b", -1)]
    sim.run_attempt("b")
    assert sim.keys_in(S.QUEUED) == [("c", -1)]


# -- the run's state ------------------------------------------------------------------------------


def test_run_state_follows_the_leaves() -> None:
    @pipeline
    def p() -> None:
        a = extract()
        report(a)
        load.with_options(trigger_rule="all_done")(a)

    sim = Sim.of(p)
    d = sim.step()
    assert d.run_state is RunState.RUNNING
    assert sim.step().run_state is None  # already running
    sim.run_attempt("extract", "failed")
    assert sim.state("report") is S.UPSTREAM_FAILED
    assert sim.state("load") is S.QUEUED
    assert sim.run_state is RunState.RUNNING
    sim.run_attempt("load")
    assert sim.run_state is RunState.FAILED  # the leaf 'report' is upstream_failed


def test_failure_absorbed_by_all_done_leaf_is_a_success() -> None:
    @pipeline
    def p() -> None:
        load.with_options(trigger_rule="all_done")(extract())

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("extract", "failed")
    sim.run_attempt("load")
    assert sim.run_state is RunState.SUCCESS


def test_skipped_leaf_is_a_success() -> None:
    @pipeline
    def p() -> None:
        report(extract())

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("extract", "skip")
    assert sim.state("report") is S.SKIPPED
    assert sim.run_state is RunState.SUCCESS


def test_one_success_runs_early_and_one_failed_handles_errors() -> None:
    @pipeline
    def p() -> None:
        a = load.with_options(name="a")()
        b = load.with_options(name="b")()
        c = load.with_options(name="c", trigger_rule="one_success")()
        alert = load.with_options(name="alert", trigger_rule="one_failed")()
        [a, b] >> c
        [a, b] >> alert

    sim = Sim.of(p)
    sim.step()
    sim.run_attempt("a")
    assert sim.state("c") is S.QUEUED  # while b still runs
    sim.run_attempt("b", "failed")
    assert sim.state("alert") is S.QUEUED
    sim.run_attempt("c")
    sim.run_attempt("alert")
    assert sim.run_state is RunState.SUCCESS


def test_skip_outcome_skips_the_task() -> None:
    sim = Sim.of(retrying)
    sim.step()
    sim.run_attempt("flaky", "skip", error="nothing to do")
    assert sim.state("flaky") is S.SKIPPED
    assert sim.state("load") is S.SKIPPED


def test_decide_is_pure() -> None:
    sim = Sim.of(branching)
    sim.step()
    events = (sim.started("choose"), sim.finished("choose", follow=("left",)))
    before = dict(sim.snap.tis)
    a = decide(sim.snap, sim.now, events)
    b = decide(sim.snap, sim.now, events)
    assert a == b
    assert sim.snap.tis == before


def test_verdict_enum_values() -> None:
    assert {v.value for v in Verdict} == {"run", "wait", "skip", "upstream_failed"}

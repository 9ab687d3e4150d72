"""The state machine: ``decide(snapshot, now, events, capacity) -> Decision``.

Pure: no I/O, no clock, no randomness. The same inputs give the same decision, so property
tests can drive it through any history. Everything that decides a run lives here: trigger
rules, branch skips, mapping expansion, retries and backoff, timeouts, sensors, and the run's
final state. A decision is drafted first (``draft``), given its share of slots and pools by
``allocate`` (with other runs' drafts, when one driver drives many), then finished within it
(``finish``: ``ready.queue`` hands the work out).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

from phloem.dsl.refs import Lit, Param, Ref
from phloem.dsl.spec import TaskSpec
from phloem.engine.allocate import Grant, allocate
from phloem.engine.model import (
    TI,
    AttemptFinished,
    AttemptStarted,
    CacheHit,
    Capacity,
    Decision,
    Event,
    Kill,
    Snapshot,
)
from phloem.engine.ready import Draft, queue
from phloem.engine.retry import retry_delay
from phloem.engine.rules import Verdict, evaluate
from phloem.engine.work import Work
from phloem.states import (
    ACTIVE_TASK_STATES,
    SUCCESS_STATES,
    AttemptOutcome,
    RunState,
    TaskState,
    TriggerRule,
    assert_never,
)

S = TaskState
_FAILURES = (S.FAILED, S.UPSTREAM_FAILED)


def decide(
    snap: Snapshot,
    now: float,
    events: Sequence[Event] = (),
    capacity: Capacity = Capacity(),
) -> Decision:
    """Decide one run on its own: ``draft``, ``allocate`` its capacity, ``finish``."""
    d = draft(snap, now, events)
    if not d.ready:
        return finish(d, now, Grant())
    grant = allocate([d.demand(capacity.pools is not None)], capacity, now)[snap.run_id]
    return finish(d, now, grant)


def draft(snap: Snapshot, now: float, events: Sequence[Event] = ()) -> Draft:
    """Everything but handing out work: reports, timeouts, timers, trigger rules, mapping."""
    w = Work(snap)
    wake: list[float] = []
    if snap.run_state.is_terminal:
        return Draft(w, wake, closed=True)
    for event in events:
        _on_event(w, event, now)
    if _run_timed_out(w, now, wake):
        return Draft(w, wake)
    _timeouts(w, now, wake)
    _timers(w, now, wake)
    _trigger(w, now, wake)
    return Draft(w, wake)


def finish(d: Draft, now: float, grant: Grant) -> Decision:
    """Queue what ``grant`` allows of the draft's ready instances; the run's state follows."""
    if d.closed:
        return Decision()
    w = d.w
    queue(w, now, d, grant)
    run_state = _run_state(w)
    if run_state is RunState.FAILED and _retry_run(w, now, d.wake):
        run_state = RunState.RUNNING if w.snap.run_state is RunState.QUEUED else None
    return Decision(
        transitions=tuple(w.transitions),
        expansions=tuple(w.expansions),
        kills=tuple(w.kills),
        run_state=run_state,
        wake_at=min(d.wake) if d.wake else None,
    )


def cached(d: Draft, hits: Sequence[CacheHit], now: float) -> None:
    """Apply cache hits the driver found for ready instances: each becomes ``cached`` with
    the earlier output (a branch follows its earlier choice), then the tasks waiting on them
    are triggered in the same draft, so a chain of hits needs no turn per task."""
    w = d.w
    if d.closed:
        return
    for hit in hits:
        ti = w.get(hit.key)
        if ti.state is not S.SCHEDULED:
            continue  # decided otherwise meanwhile: the fact is stale
        w.set(
            replace(
                ti,
                state=S.CACHED,
                started_at=now,
                ended_at=now,
                output=hit.output,
                map_length=hit.map_length,
                follow=hit.follow,
                error=None,
                next_try_at=None,
            ),
            hit.reason,
        )
        spec = w.snap.spec.tasks[ti.task_id]
        if spec.is_branch and hit.follow is not None:
            _skip_unfollowed(w, spec, hit.follow, now)
    _trigger(w, now, d.wake)
    d.refresh()


# -- facts reported by executors -------------------------------------------------------------


def _on_event(w: Work, event: Event, now: float) -> None:
    ti = w.snap.tis.get(event.key) if event.key not in w.changed else w.changed[event.key]
    if ti is None or ti.try_number != event.try_number or ti.state not in ACTIVE_TASK_STATES:
        return  # stale: a newer attempt or a decision already superseded this report
    if isinstance(event, AttemptStarted):
        if ti.state is S.QUEUED:
            w.set(replace(ti, state=S.RUNNING, started_at=event.at))
        return
    _on_finished(w, ti, event)


def _on_finished(w: Work, ti: TI, ev: AttemptFinished) -> None:
    spec = w.snap.spec.tasks[ti.task_id]
    started = ti.started_at if ti.started_at is not None else ev.at
    match ev.outcome:
        case AttemptOutcome.SUCCESS:
            w.set(
                replace(
                    ti,
                    state=S.SUCCESS,
                    started_at=started,
                    ended_at=ev.at,
                    output=ev.output,
                    map_length=ev.map_length,
                    follow=ev.follow,
                    error=None,
                    next_try_at=None,
                )
            )
            if spec.is_branch and ev.follow is not None:
                _skip_unfollowed(w, spec, ev.follow, ev.at)
        case AttemptOutcome.SKIP:
            w.set(replace(ti, state=S.SKIPPED, started_at=started, ended_at=ev.at, error=ev.error))
        case AttemptOutcome.RESCHEDULE:
            _reschedule(w, ti, spec, ev.at, started)
        case AttemptOutcome.SENSOR_TIMEOUT:
            _sensor_timeout(w, ti, spec, ev.at, started)
        case AttemptOutcome.FAILED:
            error = ev.error or "failed"
            _fail(w, ti, spec, ev.at, error, retryable=ev.retryable, started=started)
        case _:
            assert_never(ev.outcome)


def _reschedule(w: Work, ti: TI, spec: TaskSpec, at: float, started: float) -> None:
    """A sensor's poke found its condition false: poke again after its interval, unless its
    time is up."""
    sensor = spec.options.sensor
    first = ti.first_started_at if ti.first_started_at is not None else started
    if sensor is not None and at - first >= sensor.timeout:
        _sensor_timeout(w, ti, spec, at, started)
        return
    interval = sensor.poke_interval if sensor is not None else 0.0
    w.set(
        replace(
            ti,
            state=S.UP_FOR_RESCHEDULE,
            started_at=started,
            ended_at=at,
            next_try_at=at + interval,
            retry_base=ti.retry_base + 1,
            error=None,
        )
    )


def _sensor_timeout(
    w: Work, ti: TI, spec: TaskSpec, at: float, started: float, msg: str | None = None
) -> None:
    sensor = spec.options.sensor
    limit = sensor.timeout if sensor is not None else 0.0
    msg = msg or f"sensor '{ti.task_id}' timed out: its condition did not hold within {limit:g}s"
    if sensor is not None and sensor.soft_fail:
        w.set(replace(ti, state=S.SKIPPED, started_at=started, ended_at=at, error=msg))
    else:
        w.set(replace(ti, state=S.FAILED, started_at=started, ended_at=at, error=msg), msg)


def _fail(
    w: Work, ti: TI, spec: TaskSpec, at: float, error: str, *, retryable: bool, started: float
) -> None:
    opts = spec.options
    used = ti.try_number - ti.retry_base
    if retryable and used <= opts.retries:
        seed = f"{w.snap.run_id}:{ti.task_id}:{ti.map_index}"
        delay = retry_delay(opts, used, seed)
        w.set(
            replace(
                ti,
                state=S.UP_FOR_RETRY,
                started_at=started,
                ended_at=at,
                next_try_at=at + delay,
                error=error,
            ),
            f"retry {used} of {opts.retries} in {delay:.3g}s",
        )
    else:
        w.set(replace(ti, state=S.FAILED, started_at=started, ended_at=at, error=error), error)


# -- clocks ------------------------------------------------------------------------------------


def _run_timed_out(w: Work, now: float, wake: list[float]) -> bool:
    """The pipeline's ``timeout``: past it, every attempt is stopped and failed, and every task
    that did not start is marked upstream_failed, so ``phloem retry`` resumes the run."""
    spec = w.snap.spec
    if spec.timeout is None:
        return False
    started = w.snap.started_at if w.snap.started_at is not None else now
    deadline = started + spec.timeout
    if deadline > now:
        wake.append(deadline)
        return False
    msg = f"the run timed out after {spec.timeout:g}s"
    for key in w.keys_in(*ACTIVE_TASK_STATES):
        ti = w.get(key)
        w.kills.append(Kill(key, ti.try_number, f"{msg}; the attempt was stopped"))
        w.set(replace(ti, state=S.FAILED, ended_at=now, error=msg), "run timeout")
    for key in w.keys_in(S.UP_FOR_RETRY, S.UP_FOR_RESCHEDULE):
        ti = w.get(key)
        w.set(replace(ti, state=S.FAILED, ended_at=now, next_try_at=None, error=msg), msg)
    for key in w.keys_in(S.PENDING, S.SCHEDULED):
        ti = w.get(key)
        why = f"{msg} before this task started"
        w.set(replace(ti, state=S.UPSTREAM_FAILED, ended_at=now, error=why), "run timeout")
    w.timed_out = True
    return True


def _timeouts(w: Work, now: float, wake: list[float]) -> None:
    tasks = w.snap.spec.tasks
    for key in w.keys_in(S.QUEUED, S.RUNNING):
        ti = w.get(key)
        spec = tasks[ti.task_id]
        since = ti.started_at  # an attempt waiting in a worker's queue has not started
        if since is None:
            continue
        sensor = spec.options.sensor
        if sensor is not None:
            # a poke that never returns: the sensor's own deadline, plus one poke of grace
            # for the runner to report it, ends it from here
            first = ti.first_started_at if ti.first_started_at is not None else since
            hard = max(first + sensor.timeout, since) + max(sensor.poke_interval, 1.0)
            if hard <= now:
                msg = (
                    f"sensor '{ti.task_id}' was stopped: a poke did not return by its "
                    f"{sensor.timeout:g}s deadline"
                )
                w.kills.append(Kill(key, ti.try_number, msg))
                _sensor_timeout(w, ti, spec, now, since, msg)
            else:
                wake.append(hard)
            continue
        limit = spec.options.timeout
        if limit is None:
            continue
        deadline = since + limit
        if deadline <= now:
            msg = f"timed out after {limit:g}s (attempt {ti.try_number}); the attempt was stopped"
            w.kills.append(Kill(key, ti.try_number, msg))
            _fail(w, ti, spec, now, msg, retryable=True, started=since)
        else:
            wake.append(deadline)


def _timers(w: Work, now: float, wake: list[float]) -> None:
    for key in w.keys_in(S.UP_FOR_RETRY, S.UP_FOR_RESCHEDULE):
        ti = w.get(key)
        at = ti.next_try_at or 0.0
        if at <= now:
            w.set(replace(ti, state=S.SCHEDULED))
        else:
            wake.append(at)


# -- trigger rules, branches and mapping --------------------------------------------------------


#: the reason recorded on each change a run retry makes, followed by the retry's number
RUN_RETRY = "run retry"


def _retry_run(w: Work, now: float, wake: list[float]) -> bool:
    """The pipeline's ``retries`` (Prefect's flow retries): a run about to fail runs its failed
    tasks again, after ``retry_delay``, keeping what succeeded. Each task's own retries start
    afresh; the reason ``run retry N`` on each change is how the count survives restarts."""
    spec = w.snap.spec
    if w.timed_out or w.snap.run_retries >= spec.retries:
        return False
    n = w.snap.run_retries + 1
    resume = now + spec.retry_delay
    for key in w.keys_in(S.FAILED, S.UPSTREAM_FAILED):
        ti = w.get(key)
        again = replace(
            ti,
            state=S.PENDING,
            retry_base=ti.try_number,
            next_try_at=resume if ti.state is S.FAILED else None,
            ended_at=None,
            error=None,
        )
        w.set(again, f"{RUN_RETRY} {n}")
    # at once when there is no delay: the tasks made pending wait for the next turn, and
    # with nothing running no report would bring it
    wake.append(resume)
    return True


def _trigger(w: Work, now: float, wake: list[float]) -> None:
    """Apply the trigger rules of the tasks that may have something to decide, in definition
    (topological) order, each once: those the snapshot marks (``Snapshot.dirty``), those this
    draft's changes touched, and those its own decisions touch on the way (a skip that
    cascades down a chain). Every other pending task waits, as a scan of all would find, so a
    turn costs what changed since the last, not the run's size."""
    snap = w.snap
    tasks = snap.spec.tasks
    heap = [(tasks[t].index, t) for t in {**snap.dirty, **w.touched}]
    heapq.heapify(heap)
    queued = {t for _, t in heap}
    log = w.touch_log
    seen = len(log)
    while heap:
        index, task_id = heapq.heappop(heap)
        if _trigger_task(w, tasks[task_id], now, wake):
            snap.settle(task_id)
        if len(log) > seen:
            # tasks this decision touched: those after this one decide in this turn too
            for d in log[seen:]:
                if d not in queued and tasks[d].index > index:
                    queued.add(d)
                    heapq.heappush(heap, (tasks[d].index, d))
            seen = len(log)


def _trigger_task(w: Work, t: TaskSpec, now: float, wake: list[float]) -> bool:
    """Apply ``t``'s trigger rule to its pending instances. True when the snapshot alone
    shows it has nothing to decide (no pending instance, or its rule says wait on upstream
    instances this draft did not change), so it need not be looked at until marked again."""
    task_id = t.task_id
    if not w.pending(task_id):
        return not w.snap.counts[task_id][S.PENDING]
    untouched = task_id not in w.touched
    if (
        t.upstream
        and t.options.trigger_rule is not TriggerRule.ALWAYS
        and not w.upstream_ended(task_id)
    ):
        return untouched  # no upstream instance has ended yet: no rule can decide (O(1) check)
    counts, total = w.upstream_counts(task_id)
    verdict = _verdict(w, t, counts, total)
    if verdict is Verdict.WAIT:
        return untouched
    keys = [(task_id, i) for i in w.indexes(task_id)]
    for key in keys:
        ti = w.get(key)
        if ti.state is not S.PENDING:
            continue
        if ti.next_try_at is not None and ti.next_try_at > now:
            wake.append(ti.next_try_at)  # a run retry's delay
            continue
        if verdict is Verdict.SKIP:
            w.set(replace(ti, state=S.SKIPPED, ended_at=now))
        elif verdict is Verdict.UPSTREAM_FAILED:
            w.set(replace(ti, state=S.UPSTREAM_FAILED, ended_at=now))
        elif t.is_mapped and ti.map_index == -1:
            _expand(w, t, ti, now)
        else:
            w.set(replace(ti, state=S.SCHEDULED))
    return False


#: states a branch's skip replaces when the branch ends: not yet started, or decided only by
#: another upstream's failure (as Airflow does, which skips all but running and finished tasks)
_BRANCH_SKIPPABLE = (S.PENDING, S.SCHEDULED, S.UPSTREAM_FAILED)


def _skip_unfollowed(w: Work, branch: TaskSpec, follow: tuple[str, ...], at: float) -> None:
    """The moment a branch ends, its direct downstream tasks that it did not follow (and that
    do not come after a followed task, like a join) are skipped, whatever their trigger rule."""
    for task_id in branch.downstream:
        if task_id in follow or _after_any(w.snap, follow, task_id):
            continue
        for i in w.indexes(task_id):
            ti = w.get((task_id, i))
            if ti.state in _BRANCH_SKIPPABLE:
                why = f"not followed by branch '{branch.task_id}'"
                w.set(replace(ti, state=S.SKIPPED, ended_at=at, error=None), why)


def _verdict(w: Work, t: TaskSpec, counts: Counter[TaskState], total: int) -> Verdict:
    for up in w.snap.upstream.edges.branch_upstream[t.task_id]:
        b = w.get((up, -1)) if (up, -1) in w.snap.tis or (up, -1) in w.changed else None
        if (
            b is not None
            and b.state in SUCCESS_STATES
            and b.follow is not None
            and t.task_id not in b.follow
            and not _after_any(w.snap, b.follow, t.task_id)
        ):
            # not chosen, and not a join that also comes after a chosen task
            return Verdict.SKIP
    verdict = evaluate(t.options.trigger_rule, counts, total)
    if verdict is Verdict.RUN and w.data_unfinished(t.task_id):
        # a task cannot start before the tasks whose output it reads have ended
        return Verdict.WAIT
    return verdict


def _after_any(snap: Snapshot, starts: Iterable[str], target: str) -> bool:
    """Is ``target`` downstream (transitively) of any of ``starts``?"""
    tasks = snap.spec.tasks
    seen: set[str] = set()
    frontier = [d for s in starts if s in tasks for d in tasks[s].downstream]
    while frontier:
        node = frontier.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            frontier.extend(tasks[node].downstream)
    return False


def _expand(w: Work, t: TaskSpec, placeholder: TI, now: float) -> None:
    assert t.expand is not None
    count = 1
    for name, arg in t.expand:
        n, problem = _length(w, arg)
        if problem == "upstream":
            w.set(replace(placeholder, state=S.UPSTREAM_FAILED, ended_at=now))
            return
        if problem == "skipped":
            w.set(replace(placeholder, state=S.SKIPPED, ended_at=now))
            return
        if n is None:
            msg = f"cannot expand '{t.task_id}' over '{name}': {problem}"
            w.set(replace(placeholder, state=S.FAILED, ended_at=now, error=msg), msg)
            return
        count *= n
    w.expand(placeholder, count, now)


def _length(w: Work, arg: object) -> tuple[int | None, str]:
    if isinstance(arg, Lit):
        return len(arg.value), ""
    if isinstance(arg, Param):
        value = w.snap.params.get(arg.name)
        if isinstance(value, (list, tuple)):
            return len(value), ""
        return None, f"parameter '{arg.name}' is {type(value).__name__}, not a list"
    assert isinstance(arg, Ref)
    u = w.snap.spec.tasks[arg.task_id]
    insts = [w.get((arg.task_id, i)) for i in w.indexes(arg.task_id)]
    if any(ti.state in _FAILURES for ti in insts):
        return None, "upstream"
    if any(ti.state not in SUCCESS_STATES for ti in insts):
        return None, "skipped"
    if u.is_mapped:
        return len(insts), ""
    length = insts[0].map_length
    if length is None:
        return None, f"task '{arg.task_id}' did not return a list"
    return length, ""


def _run_state(w: Work) -> RunState | None:
    snap = w.snap
    if w.timed_out:
        return RunState.FAILED
    # the snapshot's state indexes plus this decision's changes: no scan over tasks
    unfinished = snap.unfinished + sum(
        n for d in w.delta.values() for s, n in d.items() if not s.is_terminal
    )
    if unfinished:
        return RunState.RUNNING if snap.run_state is RunState.QUEUED else None
    for leaf in snap.spec.leaves:
        c = w.counts(leaf)
        if c[S.FAILED] or c[S.UPSTREAM_FAILED]:
            return RunState.FAILED
    return RunState.SUCCESS

"""What cancelling a run changes: pure, so the store applies it in one transaction.

Every unfinished task instance fails, with the reason as its error, so the run's history says
why it ended and ``phloem retry`` (which resets failed tasks) resumes exactly what was cut
short. A scheduled or waiting instance goes through ``pending`` to ``failed``, the one path
the state table allows for an instance that never started.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from phloem.records import TI, Transition
from phloem.states import TERMINAL_TASK_STATES, TaskState

S = TaskState


def cancel_transitions(tis: Iterable[TI], reason: str, now: float) -> list[Transition]:
    out: list[Transition] = []
    for ti in tis:
        if ti.state in TERMINAL_TASK_STATES:
            continue
        failed = replace(ti, state=S.FAILED, error=reason, ended_at=now, next_try_at=None)
        if ti.state is S.SCHEDULED:
            pending = replace(ti, state=S.PENDING)
            out += [Transition(ti, pending, reason), Transition(pending, failed, reason)]
        else:
            out.append(Transition(ti, failed, reason))
    return out


__all__ = ["cancel_transitions"]

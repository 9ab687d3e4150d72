"""How a state looks on a page: a colour (a CSS class) AND an icon and a word, so nobody
needs to tell colours apart to read a run, and a mapped task's counts in one short phrase."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: state -> (icon, words); the CSS class is ``s-<state>``
ICONS: dict[str, str] = {
    "pending": "○",
    "scheduled": "◔",
    "queued": "◑",
    "running": "▶",
    "success": "✓",
    "failed": "✗",
    "up_for_retry": "↻",
    "up_for_reschedule": "◷",
    "skipped": "⤼",
    "upstream_failed": "⚠",
    "cached": "≡",
    "interrupted": "■",
    "none": "·",
}

#: which state a mapped task's cell shows when its instances differ: the one that most needs
#: a look first (a failure before a run in progress before a success)
URGENCY = (
    "failed",
    "upstream_failed",
    "running",
    "up_for_retry",
    "up_for_reschedule",
    "queued",
    "scheduled",
    "pending",
    "skipped",
    "cached",
    "success",
)


def icon(state: str) -> str:
    return ICONS.get(state, "?")


def words(state: str) -> str:
    return state.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Summary:
    """A task's instances in one run, for a cell or a graph node."""

    state: str  # the state shown (the most urgent one)
    total: int
    counts: dict[str, int]

    @property
    def mapped_text(self) -> str:
        """e.g. ``97/100 success, 3 failed``: the successes first, then the rest by urgency."""
        done = self.counts.get("success", 0) + self.counts.get("cached", 0)
        parts = [f"{done}/{self.total} success"]
        parts += [
            f"{n} {words(s)}"
            for s in URGENCY
            if s not in ("success", "cached") and (n := self.counts.get(s, 0))
        ]
        return ", ".join(parts)


def summarize(states: Iterable[str]) -> Summary:
    """The states of a task's instances as one cell (a grid has thousands: one instance, the
    common case, takes no counting)."""
    if isinstance(states, list) and len(states) == 1:
        return _single(states[0])
    counts: dict[str, int] = {}
    for st in states:
        counts[st] = counts.get(st, 0) + 1
    shown = next((s for s in URGENCY if counts.get(s)), "none")
    return Summary(shown, sum(counts.values()), counts)


def _single(state: str) -> Summary:
    known = _SINGLES.get(state)
    return (
        known if known is not None else Summary(state if state in ICONS else "none", 1, {state: 1})
    )


#: one instance in each state: the common cell, made once (a Summary is never changed)
_SINGLES = {st: Summary(st, 1, {st: 1}) for st in ICONS}


def summary_of(counts: Mapping[str, int]) -> Summary:
    """A cell from counts by state (a grid reads counts, not instances)."""
    if len(counts) == 1:
        ((st, n),) = counts.items()
        if n == 1:
            return _single(st)
    shown = next((s for s in URGENCY if counts.get(s)), "none")
    return Summary(shown, sum(counts.values()), dict(counts))


__all__ = ["ICONS", "URGENCY", "Summary", "icon", "summarize", "summary_of", "words"]

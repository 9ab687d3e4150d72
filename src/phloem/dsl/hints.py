"""'Did you mean' hints that only ever point at a likely misspelling.

A hint that names a different feature is worse than none (``timeout`` is not a typo of
``timezone``), so a name is suggested only when it is a few keystrokes away from what was
written, relative to its length, or the same word spelt with other case or separators.
"""

from __future__ import annotations

from collections.abc import Iterable


def _folded(word: str) -> str:
    return word.lower().replace("_", "").replace("-", "").replace(" ", "")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance where swapping two neighbours counts as one edit."""
    if a == b:
        return 0
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def _allowed_edits(word: str) -> int:
    """How many edits still look like a typo: none for tiny words, about one in four."""
    n = len(word)
    if n <= 3:
        return 0
    if n <= 5:
        return 1
    if n <= 10:
        return 2
    return 3


def likely_meant(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` is most likely a misspelling of, or None when none is close."""
    folded = _folded(word)
    best: tuple[int, str] | None = None
    for candidate in candidates:
        if candidate == word:
            continue
        if _folded(candidate) == folded:
            return candidate
        limit = min(_allowed_edits(word), _allowed_edits(candidate))
        if abs(len(candidate) - len(word)) == 1 and (
            candidate.startswith(word) or word.startswith(candidate)
        ):
            limit = max(limit, 1)  # a letter missing or added at the end: 'cpu' for 'cpus'
        if abs(len(candidate) - len(word)) > limit:
            continue
        d = edit_distance(word.lower(), candidate.lower())
        if d <= limit and (best is None or d < best[0]):
            best = (d, candidate)
    return best[1] if best else None


def did_you_mean(word: str, candidates: Iterable[str], listing: str) -> str:
    """'; did you mean 'x'?' for a likely misspelling, else '; <listing>: a, b, c'."""
    names = sorted(candidates)
    meant = likely_meant(word, names)
    if meant is not None:
        return f"; did you mean '{meant}'?"
    return f"; {listing}: {', '.join(names)}"

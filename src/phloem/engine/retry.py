"""Retry policy: delays (exponential backoff with a cap and deterministic jitter) and the
memory a retry gets after running out of it."""

from __future__ import annotations

import hashlib

from phloem.dsl.options import TaskOptions


def retry_delay(options: TaskOptions, retry_number: int, seed: str = "") -> float:
    """Seconds to wait before retry ``retry_number`` (1 for the first retry).

    min(max_retry_delay, retry_delay * retry_backoff ** (n - 1)), then reduced by up to
    ``retry_jitter`` of itself. Jitter comes from a hash of ``seed`` so the engine stays pure
    and a decision can be replayed.
    """
    delay = options.retry_delay * options.retry_backoff ** max(0, retry_number - 1)
    if options.max_retry_delay is not None:
        delay = min(delay, options.max_retry_delay)
    if options.retry_jitter and delay > 0:
        digest = hashlib.blake2b(f"{seed}:{retry_number}".encode(), digest_size=8).digest()
        fraction = int.from_bytes(digest, "big") / 2**64
        delay -= delay * options.retry_jitter * fraction
    return delay


def attempt_memory(options: TaskOptions, out_of_memory_at: list[int]) -> int | None:
    """The memory the next attempt may use: the task's ``resources`` memory, or, after
    attempts that ran out of memory at the limits in ``out_of_memory_at``,
    ``retry_memory_factor`` times the largest of them, at most ``max_memory``."""
    base = options.resources.memory
    if not base:
        return None
    factor = options.retry_memory_factor
    if factor is None or not out_of_memory_at:
        return base
    grown = int(max(max(out_of_memory_at), base) * factor)
    cap = options.max_memory
    return grown if cap is None else min(grown, cap)

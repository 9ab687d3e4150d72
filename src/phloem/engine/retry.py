"""Retry delays: exponential backoff with a cap and deterministic jitter."""

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

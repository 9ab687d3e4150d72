"""Where phloem keeps its state, read from ``PHLOEM_*`` environment variables.

A plain frozen dataclass: reading it is explicit (``Settings.from_env()``), never a side effect
of importing phloem, so two configurations can live in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Default cap on one attempt's log.
DEFAULT_LOG_MAX_BYTES = 100 * 2**20


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    db_url: str
    artifacts_url: str
    workers: int
    #: the most one attempt's log keeps (``PHLOEM_LOG_MAX_BYTES``); the rest is dropped
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def secret_key_path(self) -> Path:
        """Where the key that encrypts connections lives when ``PHLOEM_SECRET_KEY`` is unset."""
        return self.home / "secret.key"

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        env = os.environ
        base = Path(home or env.get("PHLOEM_HOME") or Path.cwd() / ".phloem").absolute()
        db_url = env.get("PHLOEM_DB_URL") or f"sqlite:///{base / 'phloem.db'}"
        artifacts = env.get("PHLOEM_ARTIFACTS_URL") or str(base / "artifacts")
        workers = int(env.get("PHLOEM_WORKERS") or 0) or default_workers()
        log_max = _positive_int(env, "PHLOEM_LOG_MAX_BYTES", DEFAULT_LOG_MAX_BYTES)
        return cls(
            home=base,
            db_url=db_url,
            artifacts_url=artifacts,
            workers=workers,
            log_max_bytes=log_max,
        )

    def ensure_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)


def _positive_int(env: os._Environ[str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        from phloem.errors import PhloemError

        raise PhloemError(f"{name}={raw!r} is not valid: use a positive whole number of bytes")
    return value


def default_workers() -> int:
    return max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)

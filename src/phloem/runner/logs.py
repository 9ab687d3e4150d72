"""Attempt logs: one file per attempt, created only when something is written, with the
attempt's known secrets masked on the way in."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

from phloem.secrets import Masker


def log_path(
    logs_dir: Path | str, run_id: str, task_id: str, map_index: int, try_number: int
) -> str:
    suffix = f"[{map_index}]" if map_index >= 0 else ""
    return str(Path(logs_dir) / run_id / f"{task_id}{suffix}.{try_number}.log")


class LazyLogFile(io.TextIOBase):
    """A text stream that opens its file on first write, so silent tasks cost no file."""

    def __init__(self, path: str, masker: Masker | None = None) -> None:
        self.path = path
        self.masker = masker
        self._fh: Any = None

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not s:
            return 0
        if self._fh is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._fh.write(self.masker.mask(s) if self.masker is not None else s)
        return len(s)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        super().close()


def attempt_logger(name: str, stream: LazyLogFile) -> logging.Logger:
    """A logger private to one attempt (not registered globally, so nothing leaks)."""
    logger = logging.Logger(name, logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger

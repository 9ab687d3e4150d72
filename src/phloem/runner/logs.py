"""Attempt logs: one file per attempt, created only when something is written, with the
attempt's known secrets masked on the way in and its size capped.

Bytes, not text: what a task writes at the file-descriptor level (a subprocess, ``os.write``)
may be in any encoding, and is kept as written (masking decodes with ``surrogateescape``, so
it round-trips exactly).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TextIO

from phloem.config import DEFAULT_LOG_MAX_BYTES
from phloem.secrets import Masker

__all__ = ["DEFAULT_LOG_MAX_BYTES", "AttemptLog", "attempt_logger", "log_path", "mask_bytes"]
#: With secrets to mask, output is masked a line at a time so a secret split between two
#: reads is still found; a line longer than this is masked in pieces, keeping a tail back.
_LINE_LIMIT = 64 * 1024
_TAIL = 4096
_UNSAFE = {c: f"%{c:02X}" for c in (*range(32), 127, ord("/"), ord("\\"))}


def log_path(
    logs_dir: Path | str, run_id: str, task_id: str, map_index: int, try_number: int
) -> str:
    """Where an attempt's log lives. Characters a file name cannot hold (NUL, ``/``) or should
    not (control characters) are %-escaped, so an odd task name never breaks its attempt."""
    suffix = f"[{map_index}]" if map_index >= 0 else ""
    name = task_id.translate(_UNSAFE)
    # os.path, not pathlib: one path per attempt handed out, 100,000 for a wide expand
    return os.path.join(os.fspath(logs_dir), run_id, f"{name}{suffix}.{try_number}.log")


def mask_bytes(masker: Masker | None, data: bytes) -> bytes:
    if masker is None or not len(masker) or not data:
        return data
    text = data.decode("utf-8", "surrogateescape")
    return masker.mask(text).encode("utf-8", "surrogateescape")


def _above_stdio(fd: int) -> int:
    """``fd``, or a copy numbered 3 or more if it is 0, 1 or 2 (closed, the original gone).

    The log is opened by the capture's reader thread on the attempt's first byte, which may
    come after the task printed and closed its fds 1 and 2; the log then took number 1, the
    attempt's end pointed fd 1 back at the capture's pipe (silently closing the log there),
    and closing the log closed fd 1: the next attempt of the worker wrote to a closed fd."""
    if fd > 2:
        return fd
    import fcntl

    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def _open(path: str) -> int:
    """The log file, opened to append; its directory made only if it is missing (the run's
    first log): a ``mkdir`` that finds it there costs more than the ``open`` itself."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 2**20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"


class AttemptLog:
    """The log file of one attempt.

    Opened on the first byte (a silent task costs no file), masked with the attempt's
    :class:`Masker`, and capped at ``max_bytes``: past the cap a marker says so and further
    output is counted, not kept. phloem's own notes (the task's traceback, a timeout) are
    written even past the cap, so the reason an attempt failed is never cut off. A log that
    cannot be written (a full disk) never fails the attempt: :attr:`problem` says why.
    """

    def __init__(
        self, path: str, masker: Masker | None = None, max_bytes: int = DEFAULT_LOG_MAX_BYTES
    ) -> None:
        self.path = path
        self.masker = masker
        self.max_bytes = max_bytes
        self.problem: str | None = None
        self._fd: int | None = None
        self._kept = 0  # bytes of the task's output written (what the cap counts)
        self._dropped = 0
        self._truncated = False
        self._carry = b""

    def write(self, data: bytes) -> None:
        """Raw output of the attempt (masked here, line by line when there are secrets)."""
        if self.masker is not None and len(self.masker):
            data = self._carry + data
            cut = data.rfind(b"\n") + 1
            if cut == 0 and len(data) > _LINE_LIMIT:
                cut = len(data) - _TAIL
            data, self._carry = data[:cut], data[cut:]
        elif self._carry:
            data, self._carry = self._carry + data, b""
        if data:
            self._emit(mask_bytes(self.masker, data), capped=True)

    def flush(self) -> None:
        """Write out a partial last line held back for masking."""
        if self._carry:
            data, self._carry = self._carry, b""
            self._emit(mask_bytes(self.masker, data), capped=True)

    def note(self, text: str) -> None:
        """A line from phloem itself; kept even past the cap."""
        self.flush()
        if self.masker is not None:
            text = self.masker.mask(text)
        if not text.endswith("\n"):
            text += "\n"
        self._emit(text.encode("utf-8", "backslashreplace"), capped=False)

    def close(self) -> None:
        self.flush()
        if self._dropped:
            self.note(
                f"[phloem: {_size(self._dropped)} more output of this attempt was dropped "
                f"(log limit {_size(self.max_bytes)}, PHLOEM_LOG_MAX_BYTES)]"
            )
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _emit(self, data: bytes, *, capped: bool) -> None:
        if capped:
            room = self.max_bytes - self._kept
            if len(data) > room:
                keep = max(room, 0)
                self._dropped += len(data) - keep
                data = data[:keep]
                self._kept += keep
                if not self._truncated:
                    self._truncated = True
                    data += (
                        f"\n[phloem: log truncated: this attempt's output reached the limit of "
                        f"{_size(self.max_bytes)} (PHLOEM_LOG_MAX_BYTES); the rest is dropped]\n"
                    ).encode()
            else:
                self._kept += len(data)
        if not data or self.problem is not None:
            return
        try:
            if self._fd is None:
                self._fd = _above_stdio(_open(self.path))
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except (OSError, ValueError) as exc:
            self.problem = f"cannot write the log {self.path!r}: {exc}"


_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _AttemptLogger(logging.Logger):
    """A logger whose one handler (to the attempt's stream) is made the first time anything
    looks at its handlers: logging a record, or task code reading or changing them. A task
    that never logs, the usual case, costs no handler (a lock, and two weak references
    ``logging`` keeps in its module state, each made under its module lock)."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self._stream = stream
        self._handlers: list[logging.Handler] | None = None
        super().__init__(name, logging.INFO)
        self._handlers = None  # what ``Logger.__init__`` set: made on the first look instead

    @property
    def handlers(self) -> list[logging.Handler]:
        if self._handlers is None:
            handler = logging.StreamHandler(self._stream)
            handler.setFormatter(logging.Formatter(_FORMAT))
            self._handlers = [handler]
        return self._handlers

    @handlers.setter
    def handlers(self, value: list[logging.Handler]) -> None:
        self._handlers = value


def attempt_logger(name: str, stream: TextIO) -> logging.Logger:
    """A logger private to one attempt (not registered globally, so nothing leaks)."""
    return _AttemptLogger(name, stream)

"""Everything an attempt writes, at the Python level or the file-descriptor level, goes to its log.

File descriptors 1 and 2 point at one pipe (so stdout and stderr interleave in the order they
were written); a reader thread masks what arrives and appends it to the log of the attempt
running now. ``print``, ``os.write(1, ...)``, ``os.system`` and subprocesses that inherit
stdout all land there, masked, and never in the driver's stdout (``phloem run --json`` stays
pure JSON). Inside an attempt ``sys.stdout`` and ``sys.stderr`` are real text files on those
descriptors, with ``buffer`` and ``fileno()``.

In a worker process the descriptors point at the pipe for the worker's whole life
(``sticky``): switching attempts is a drain of the pipe under a lock, no system call per
attempt beyond that, and nothing a task leaves behind (a thread, a background command) can
reach the driver's stdout; such late output goes to the worker's original stderr, masked with
the last attempt's secrets. In the driver's own process (the inline executor) they point at
the pipe only while an attempt runs (and what the driver's own threads write meanwhile lands
in that attempt's log too).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
import threading
from collections.abc import Iterator
from typing import Protocol, TextIO

from phloem.runner.logs import AttemptLog, mask_bytes
from phloem.secrets import Masker

_CHUNK = 65536
#: The most the reader moves per turn of its lock, so a flood cannot starve a switch.
_TURN = 16 * _CHUNK


class _Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def flush(self) -> None: ...


class _Passthrough:
    """Output that belongs to no attempt: to ``fd`` (the original stderr), masked."""

    def __init__(self, fd: int, masker: Masker | None = None) -> None:
        self.fd = fd
        self.masker = masker

    def write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, mask_bytes(self.masker, data))

    def flush(self) -> None:
        pass


def _text_stream(fd: int) -> TextIO:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )


def _flush(*streams: object) -> None:
    for s in streams:
        try:
            s.flush()  # type: ignore[attr-defined]
        except Exception:  # a stream a task broke is not phloem's to report
            continue


class OutputCapture:
    """Routes this process's fds 1 and 2 to the running attempt's log (one per process)."""

    def __init__(self, *, sticky: bool) -> None:
        self.sticky = sticky
        self._lock = threading.Lock()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._out: TextIO | None = None
        self._err: TextIO | None = None
        if sticky:
            _flush(sys.stdout, sys.stderr)
            self._stderr_fd = os.dup(2)  # phloem's warnings and output of no attempt
            os.set_inheritable(self._stderr_fd, False)
            os.dup2(self._w, 1)
            os.dup2(self._w, 2)
            sys.stdout, sys.stderr = self._streams()
        else:
            self._stderr_fd = 2
        self._sink: _Sink = _Passthrough(self._stderr_fd)
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name="phloem-output", daemon=True)
        self._thread.start()

    def _streams(self) -> tuple[TextIO, TextIO]:
        """Text files on fds 1 and 2 (made again if a task closed them)."""
        if self._out is None or self._out.closed:
            self._out = _text_stream(1)
        if self._err is None or self._err.closed:
            self._err = _text_stream(2)
        return self._out, self._err

    @contextlib.contextmanager
    def attempt(self, log: AttemptLog) -> Iterator[tuple[TextIO, TextIO]]:
        """While the block runs, fds 1 and 2, ``sys.stdout`` and ``sys.stderr`` write to ``log``.
        Yields the (stdout, stderr) text streams."""
        outer = sys.stdout, sys.stderr
        _flush(*outer)  # what the process wrote before is not the attempt's
        out, err = self._streams()
        self._switch(log)
        saved: tuple[int | None, int | None] | None = None
        if not self.sticky:
            saved = (_dup(1), _dup(2))
            os.dup2(self._w, 1)
            os.dup2(self._w, 2)
        sys.stdout, sys.stderr = out, err
        try:
            yield out, err
        finally:
            _flush(out, err)
            if saved is not None:
                for fd, copy in ((1, saved[0]), (2, saved[1])):
                    _restore(fd, copy)
                sys.stdout, sys.stderr = outer
            else:  # a worker: the task may have closed or redirected them; two system calls
                os.dup2(self._w, 1)
                os.dup2(self._w, 2)
                sys.stdout, sys.stderr = self._streams()
            self._switch(_Passthrough(self._stderr_fd, log.masker))

    def warn(self, text: str) -> None:
        """A line for whoever runs this process (not for an attempt's log)."""
        with contextlib.suppress(OSError):
            os.write(self._stderr_fd, f"phloem: {text}\n".encode("utf-8", "backslashreplace"))

    def detach(self) -> None:
        """A worker about to exit: what is still in the pipe goes out, and fds 1 and 2 point
        at the original stderr again, so a last traceback is not lost in the pipe."""
        if not self.sticky or self._closed:
            return
        self._closed = True
        _flush(sys.stdout, sys.stderr)
        with contextlib.suppress(OSError):
            os.dup2(self._stderr_fd, 1)
            os.dup2(self._stderr_fd, 2)
        self._switch(_Passthrough(self._stderr_fd, getattr(self._sink, "masker", None)))

    def close(self) -> None:
        """Stop the reader (non-sticky captures; a worker's lives as long as the worker)."""
        if self.sticky or self._closed:
            return
        self._closed = True
        os.close(self._w)
        self._thread.join(1)
        if not self._thread.is_alive():  # a command left running may still hold the pipe
            os.close(self._r)

    # -- the reader --------------------------------------------------------------------------

    def _switch(self, sink: _Sink) -> None:
        """Everything already in the pipe goes to the current sink, then to ``sink``."""
        with self._lock:
            self._drain(limit=_TURN * 4)
            self._sink.flush()
            self._sink = sink

    def _drain(self, limit: int) -> bool:
        """Move what the pipe holds now (at most ``limit`` bytes); False at end of file."""
        moved = 0
        while moved < limit:
            try:
                data = os.read(self._r, _CHUNK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self._sink.write(data)
            moved += len(data)
        return True

    def _pump(self) -> None:
        poller = select.poll()
        poller.register(self._r, select.POLLIN)
        try:
            while True:
                poller.poll()
                with self._lock:
                    if not self._drain(limit=_TURN):
                        return
        except BaseException as exc:  # never through sys.stderr: that is this very pipe
            with contextlib.suppress(OSError):
                os.write(self._stderr_fd, f"phloem: output capture stopped: {exc!r}\n".encode())


def _dup(fd: int) -> int | None:
    try:
        return os.dup(fd)
    except OSError:
        return None


def _restore(fd: int, copy: int | None) -> None:
    with contextlib.suppress(OSError):
        if copy is None:
            os.close(fd)
        else:
            os.dup2(copy, fd)
            os.close(copy)

"""The sender: delivers pending alert deliveries from the store, off the loop that drives runs.

A background thread claims due deliveries (a short lease, so two schedulers never send one
record at once), sends each with a timeout, and records the outcome fenced by its claim. A
failed send is tried again with exponential backoff and jitter, up to ``max_tries``; a
receiver that is down or slow delays only its own alerts, never a run.

Delivery is once per record as far as a network allows: a sender that dies after the
receiver took an alert but before the store recorded it leaves the record to be sent again
when its claim expires (at least once, never twice by two live senders).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from phloem.alerting.transport import SendError, Transport
from phloem.errors import first_line
from phloem.store.deliveries import Delivery
from phloem.store.port import Alerts

log = logging.getLogger("phloem.alerts")


def sender_id() -> str:
    return f"alerts:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Sender:
    """Delivers pending deliveries. ``pump`` does the store's part (claim what is due, record
    what was sent) in the calling thread and hands the sends to a worker thread; with
    ``threaded`` (a store other processes share) a background thread pumps, else the driver
    pumps once a turn (a private in-memory store is used from one thread only)."""

    def __init__(
        self,
        book: Alerts,
        transport: Transport,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
        threaded: bool = True,
        claim_ttl: float = 120.0,
        max_tries: int = 8,
        base_delay: float = 2.0,
        max_delay: float = 600.0,
        idle: float = 5.0,
        batch: int = 5,
    ) -> None:
        self.book = book
        self.transport = transport
        self.holder = holder or sender_id()
        self.clock = clock
        self.threaded = threaded
        self.claim_ttl = claim_ttl
        self.max_tries = max_tries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.idle = idle
        self.batch = batch
        #: deliveries sent by this sender (for metrics of this process and for tests)
        self.sent = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._done: queue.SimpleQueue[tuple[Delivery, BaseException | None]] = queue.SimpleQueue()
        self._inflight = 0
        self._next_look = 0.0

    def _callables(self) -> list[str]:
        return list((self.transport.callables or {}).keys())

    # -- one pump -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Sends are under way."""
        return self._inflight > 0

    def pump(self) -> int:
        """Record the sends that ended, then claim what is due and start sending it (never
        waits for a receiver). Returns how many deliveries were recorded as sent."""
        sent = self._collect()
        if self._inflight >= self.batch or self._stop.is_set():
            return sent
        claimed = self.book.claim(
            self.holder,
            self.clock(),
            self.claim_ttl,
            self.batch - self._inflight,
            callables=self._callables(),
        )
        if claimed and self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="phloem-alert-send")
        for d in claimed:
            self._inflight += 1
            assert self._pool is not None
            self._pool.submit(self._send, d)
        return sent

    def _send(self, d: Delivery) -> None:
        try:
            self.transport.send(d)
        except BaseException as exc:
            self._done.put((d, exc))
        else:
            self._done.put((d, None))
        self._wake.set()

    def _collect(self) -> int:
        sent = 0
        while True:
            try:
                d, exc = self._done.get_nowait()
            except queue.Empty:
                return sent
            try:
                if exc is None:
                    if self.book.finish(d.id, self.holder, self.clock(), sent=True):
                        sent += 1
                        self.sent += 1
                elif isinstance(exc, SendError):
                    self._failed(d.id, d.tries + 1, str(exc), exc.retry)
                else:  # a bug in a channel must not stop the others
                    self._failed(d.id, d.tries + 1, first_line(exc), True)
            finally:
                # under way until recorded: ``flush`` (on another thread) waits for that
                self._inflight -= 1

    def deliver_due(self, timeout: float = 30.0) -> int:
        """Send what is due now and wait for those sends (tests, and a process about to
        exit); returns how many were sent."""
        sent = self.pump()
        deadline = time.monotonic() + timeout
        while self._inflight and time.monotonic() < deadline:
            self._wake.wait(0.05)
            self._wake.clear()
            sent += self._collect()
        return sent

    def _failed(self, delivery_id: int, tries: int, error: str, retry: bool) -> None:
        now = self.clock()
        if retry and tries < self.max_tries:
            delay = min(self.base_delay * 2 ** (tries - 1), self.max_delay)
            at = now + delay * (0.5 + random.random() / 2)
            log.warning("alert %d not sent (try %d): %s; trying again", delivery_id, tries, error)
            self.book.finish(delivery_id, self.holder, now, sent=False, error=error, retry_at=at)
        else:
            log.error("alert %d not sent, giving up after %d tries: %s", delivery_id, tries, error)
            self.book.finish(delivery_id, self.holder, now, sent=False, error=error)

    def turn(self) -> float | None:
        """For a driver that pumps (not ``threaded``): pump if anything may be due; returns
        when to look again (None: nothing pending)."""
        now = self.clock()
        if not self._inflight and now < self._next_look:
            return self._next_look
        self.pump()
        due = self.book.next_due(self.clock(), self._callables())
        self._next_look = due if due is not None else float("inf")
        if self._inflight:
            return self.clock() + 0.2
        return due

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        if not self.threaded:
            self._next_look = 0.0  # something was recorded: look at the next turn
            return
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="phloem-alerts", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._next_look = 0.0
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            # a send under way ends by its own timeout; its claim expires and another
            # sender retries it
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def flush(self, timeout: float) -> None:
        """Deliver what is due, for at most ``timeout`` seconds (a short-lived process about
        to exit); what is left stays pending in the store for another process. Sends under
        way when the time is up are waited for (each ends by its own timeout), so that an
        alert a receiver took is recorded as sent rather than sent again by another process
        once this one's claim expires."""
        try:
            self._flush(timeout)
        finally:
            self._settle(self.transport.timeout + 1.0)

    def _settle(self, limit: float) -> None:
        """Wait at most ``limit`` seconds for the sends under way to be recorded."""
        deadline = time.monotonic() + limit
        while self._inflight and time.monotonic() < deadline:
            if self._thread is not None:  # the thread records them
                self._wake.set()
                time.sleep(0.02)
            else:
                self._wake.wait(0.05)
                self._wake.clear()
                self._collect()

    def _flush(self, timeout: float) -> None:
        if self._thread is not None:  # the thread sends; wait for it to have nothing due
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                due = self.book.next_due(self.clock(), self._callables())
                if due is None or due > self.clock() + (deadline - time.monotonic()):
                    return
                self._wake.set()
                time.sleep(0.05)
            return
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self._inflight and left > 0:  # sends under way: their outcome first
                self._wake.wait(min(0.05, left))
                self._wake.clear()
                self._collect()
                continue
            due = self.book.next_due(self.clock(), self._callables())
            if left <= 0 or due is None or due - self.clock() > left:
                return
            if due > self.clock():
                time.sleep(due - self.clock())
            else:
                self.deliver_due(timeout=max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.idle
            try:
                self.pump()
                due = self.book.next_due(self.clock(), self._callables())
                if due is not None:
                    wait = min(self.idle, max(0.0, due - self.clock()))
            except Exception:
                log.exception("the alert sender failed; trying again in %.0fs", self.idle)
            self._wake.wait(wait if wait > 0 else 0.01)
            self._wake.clear()


__all__ = ["Sender", "sender_id"]

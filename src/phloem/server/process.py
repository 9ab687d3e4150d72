"""``phloem server``: the scheduler and the REST API of one machine, under one command.

The process model, chosen so that HTTP traffic never slows the scheduler's loop:

- the scheduler runs in a child process of its own (``executors.lifetime.start_child``: it
  dies with the server however the server dies, SIGKILL included, and takes its workers with
  it). It shares no interpreter, no GIL and no database connection with the API, so a burst
  of requests competes with it only for CPU, like any other process on the machine;
- the API is served by uvicorn in the server's own process, which owns the child: it forks
  the scheduler before it starts any thread or binds its socket (the child inherits neither),
  then lowers its own priority to the lowest (``yield_cpus``), so that when the CPUs are
  short it is the requests that wait, never the scheduler (on a machine whose CPUs the
  tasks keep busy, requests are slow: that is the trade);
- SIGTERM or Ctrl-C stop uvicorn (requests in flight finish), then the scheduler gets SIGTERM
  and stops as ``phloem scheduler`` does (attempts in flight are stopped, their runs left
  resumable, its leases released), then the server exits 0. A scheduler that dies on its own
  stops the server with status 1, so a supervisor (systemd, Kubernetes) restarts both.

Several servers may share one PostgreSQL store, as schedulers do; on SQLite the second
server's scheduler is refused (start it with ``--no-scheduler`` to serve only the API).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from phloem.app import Phloem
from phloem.config import Settings

log = logging.getLogger("phloem.server")

#: how long the scheduler has to stop cleanly before it is killed
SCHEDULER_STOP_TIMEOUT = 30.0
#: how much the API process lowers its priority once the scheduler child is forked (the
#: child keeps the server's): to the lowest niceness, so that when the CPUs are short the
#: requests wait, not the scheduler's loop. At 5 the API still took about a quarter of a
#: CPU the scheduler wanted (CPU weight 335 against its 1024); at 19 it is 15 against 1024
API_NICE = 19
#: seconds an idle HTTP connection stays open: longer than phloem's client keeps one for
#: reuse (``client.KEEPALIVE_EXPIRY``); at equal times a request sent as the server closed
#: the connection was reset (uvicorn's and httpx's defaults are both 5 s)
KEEP_ALIVE = 15


def yield_cpus(sched: str = "idle") -> None:
    """Lower this process's claim on the CPUs below its scheduler's: the lowest niceness,
    then the idle scheduling class where the system allows it (a process of that class runs
    on what the others leave and gives way the moment one of them wakes, where a nice one
    still keeps its turn), so that when the CPUs are short the requests wait, not the loop.
    Threads started after the call inherit it. ``sched``: "idle", or "nice" for the normal
    class (``PHLOEM_API_SCHED``)."""
    try:
        os.nice(API_NICE)
    except OSError:  # not allowed here: the processes share the CPUs evenly
        pass
    if sched == "idle" and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    scheduler: bool = True
    folder: Path | None = None
    parse_interval: float = 10.0
    parallelism: int | None = None
    cookie_secure: bool = False


def _run_scheduler(conn: Connection, settings: Settings, options: ServerOptions) -> None:
    """The scheduler child: ``phloem scheduler`` in all but name."""
    from phloem.scheduler import Scheduler, SchedulerConfig

    conn.close()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = Phloem(settings)
    config = SchedulerConfig.from_settings(
        settings,
        options.folder,
        parse_interval=options.parse_interval,
        parallelism=options.parallelism,
    )
    sched = Scheduler(app, config)
    signal.signal(signal.SIGTERM, lambda *_: sched.stop())
    signal.signal(signal.SIGINT, lambda *_: sched.stop())
    code = 0
    try:
        sched.run()
    except Exception as exc:
        from phloem.errors import PhloemError

        if not isinstance(exc, PhloemError):
            log.exception("the scheduler failed")
        else:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        code = 3
    finally:
        app.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from phloem.errors import PhloemError

        raise PhloemError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port "
            "(or stop what uses it)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def serve(settings: Settings, options: ServerOptions, *, say: Any = None) -> int:
    """Run the server until SIGTERM or Ctrl-C; returns the exit status."""
    import uvicorn

    from phloem.accounts.manage import ensure_admin
    from phloem.executors.lifetime import start_child
    from phloem.server.app import create_app

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    ph = Phloem(settings)
    made = ensure_admin(ph)  # also creates or upgrades the schema before the child starts
    if made is not None:
        password, path = made
        say(
            f"created user 'admin' with password {password} (shown once; also in {path}, "
            "readable only by you: delete it once you have changed or stored the password)"
        )
    where = ph.store.display_url
    ph.close()  # the child must not share this process's database connections

    stopping = threading.Event()
    failed = threading.Event()
    server: uvicorn.Server | None = None
    child = None
    if options.scheduler:
        child, end = start_child(_run_scheduler, (settings, options), "phloem-scheduler")
        end.close()
        yield_cpus(settings.api_sched)
    api = create_app(Phloem(settings), cookie_secure=options.cookie_secure)
    # what start-up made (modules, the app, its routes and models) lives as long as the
    # process: frozen out of the collector's sight, a full collection no longer walks it all
    # (some 140,000 objects, tens of ms of CPU taken from whichever request triggered it)
    gc.freeze()

    def _stop() -> None:
        stopping.set()
        api.state.stopping.set()  # open event streams end
        if server is not None:
            server.should_exit = True

    def _on_signal(signum: int, frame: Any) -> None:
        _stop()

    # installed before uvicorn's, which restores and re-raises them when it ends: the server
    # then stops through here instead of dying by the signal
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    def _watch_scheduler() -> None:
        assert child is not None
        from multiprocessing.connection import wait

        wait([child.sentinel])
        if not stopping.is_set():
            log.error("the scheduler stopped (status %s); stopping the server", child.exitcode)
            failed.set()
            _stop()

    try:
        sock = _bind(options.host, options.port)
    except BaseException:
        if child is not None:
            _stop_scheduler(child)
        raise
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        api,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=KEEP_ALIVE,
        lifespan="off",
        # the app reads X-Forwarded-For itself, from the trusted proxies only: uvicorn's own
        # handling would believe any local process
        proxy_headers=False,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn takes SIGTERM and SIGINT over while it serves, and ``_on_signal`` gets
            # them only once it has stopped: the event streams must hear of the stop now, or
            # each open one holds the stop for the whole grace period and is then cut off.
            # uvicorn's own first: it counts a second Ctrl-C by ``should_exit``
            super().handle_exit(sig, frame)
            _stop()

    server = Server(config)
    if child is not None:
        threading.Thread(target=_watch_scheduler, name="phloem-watch", daemon=True).start()
    host = f"[{options.host}]" if ":" in options.host else options.host
    say(
        f"phloem server: http://{host}:{port}/api/v1 on {where}"
        + (f" (scheduler pid {child.child_pid})" if child is not None else " (no scheduler)")
    )
    try:
        if not stopping.is_set():
            server.run(sockets=[sock])
    finally:
        sock.close()
        api.state.phloem.close()
        if child is not None:
            stopping.set()
            _stop_scheduler(child)
    return 1 if failed.is_set() else 0


def _stop_scheduler(child: Any) -> None:
    """SIGTERM to the scheduler itself (a clean stop), then to its guard if it lingers."""
    if child.is_alive():
        try:
            os.kill(child.child_pid, signal.SIGTERM)
        except OSError:
            pass
        child.join(SCHEDULER_STOP_TIMEOUT)
    child.stop()


__all__ = ["ServerOptions", "serve"]

"""The REST API under load: latency of the list endpoints, of a run with 1,000 mapped instances
and of the events stream, with 20 clients at once, on a store filled by fill_store.py.

    python benchmarks/fill_store.py sqlite:////tmp/big/phloem.db
    python benchmarks/api_load.py sqlite:////tmp/big/phloem.db [--clients 20] [--rounds 10]
    python benchmarks/api_load.py postgresql+psycopg://postgres@127.0.0.1:5432/bench

Starts ``phloem server --no-scheduler`` on that store (a fresh home, a free port), makes an
admin token, then runs ``--clients`` threads, each with its own connection, that call every
endpoint below ``--rounds`` times in a shuffled order. Prints p50 / p95 / p99 / max per
endpoint in milliseconds (the target: p95 <= 300 ms), the requests per second overall and the
server's CPU time per request (from /proc: user + system of the server process); then, with
``--one-by-one N``, each endpoint called N times by one client alone: the server's CPU time
and the median wall time per request.
The events stream is timed from the request to its first event (a replay of recent history).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MAPPED_RUN = "mapped-1000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_token(db_url: str, home: Path) -> str:
    from phloem.accounts import manage
    from phloem.app import Phloem
    from phloem.config import Settings

    ph = Phloem(Settings.from_env(environ={"PHLOEM_HOME": str(home), "PHLOEM_DB_URL": db_url}))
    try:
        name = f"bench-{os.getpid()}-{int(time.time())}"
        if ph.store.accounts.user("bench") is None:
            from phloem.accounts.secrets import hash_password

            ph.store.accounts.add_user("bench", "admin", hash_password(name), time.time())
        token, _ = manage.create_token(ph, name, "bench")
        return token
    finally:
        ph.close()


def start_server(db_url: str, home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PHLOEM_HOME": str(home), "PHLOEM_DB_URL": db_url}
    return subprocess.Popen(
        [sys.executable, "-m", "phloem", "server", "--no-scheduler", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not start within 120 s")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def endpoints(c: Any) -> dict[str, Callable[[], Any]]:
    """name -> a call; cursors and ids are read once, before timing starts."""
    page1 = c.get("/runs", params={"limit": 50}).json()
    deep = page1["next_cursor"]
    for _ in range(19):  # the cursor of page 21: keyset pages cost the same however deep
        deep = c.get("/runs", params={"limit": 50, "cursor": deep}).json()["next_cursor"]
    some_run = page1["items"][5]["run_id"]
    mapped_page2 = c.get(f"/runs/{MAPPED_RUN}/instances", params={"limit": 500}).json()
    last = c.get("/runs", params={"limit": 1}).json()["items"][0]
    pipeline = last["pipeline"]

    def events_first() -> None:
        with c.stream("GET", "/events", params={"after": 1}) as r:
            for line in r.iter_lines():
                if line.startswith("id:"):
                    return

    return {
        "GET /runs (newest 50)": lambda: c.get("/runs", params={"limit": 50}),
        "GET /runs page 21": lambda: c.get("/runs", params={"limit": 50, "cursor": deep}),
        "GET /runs?pipeline=": lambda: c.get("/runs", params={"pipeline": pipeline}),
        "GET /runs?state=failed": lambda: c.get("/runs", params={"state": "failed"}),
        "GET /runs?run_type=backfill": lambda: c.get("/runs", params={"run_type": "backfill"}),
        "GET /runs?logical range": lambda: c.get(
            "/runs",
            params={"logical_from": "2025-06-01", "logical_to": "2025-06-30", "limit": 100},
        ),
        "GET /runs/{id}": lambda: c.get(f"/runs/{some_run}"),
        "GET /runs/{id}/instances": lambda: c.get(f"/runs/{some_run}/instances"),
        "GET /runs/mapped-1000": lambda: c.get(f"/runs/{MAPPED_RUN}"),
        "GET mapped-1000 instances p1": lambda: c.get(
            f"/runs/{MAPPED_RUN}/instances", params={"limit": 500}
        ),
        "GET mapped-1000 instances p2": lambda: c.get(
            f"/runs/{MAPPED_RUN}/instances",
            params={"limit": 500, "cursor": mapped_page2["next_cursor"]},
        ),
        "GET /pipelines": lambda: c.get("/pipelines"),
        "GET /assets/events": lambda: c.get("/assets/events"),
        "GET /events (first event)": events_first,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db_url")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10, help="calls of each endpoint per client")
    ap.add_argument(
        "--one-by-one",
        type=int,
        default=20,
        help="then calls of each endpoint by one client alone, for the server's CPU time per "
        "request (0: skip)",
    )
    args = ap.parse_args(argv)
    import httpx

    home = Path(tempfile.mkdtemp(prefix="phloem-api-load-"))
    token = make_token(args.db_url, home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(args.db_url, home, port)
    try:
        wait_up(url, proc)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60) as c:
            names = list(endpoints(c))
        times: dict[str, list[float]] = {n: [] for n in names}
        errors: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(args.clients)

        def client(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60) as c:
                calls = endpoints(c)
                order = [n for n in names for _ in range(args.rounds)]
                rng.shuffle(order)
                barrier.wait()
                for name in order:
                    t0 = time.perf_counter()
                    r = calls[name]()
                    took = time.perf_counter() - t0
                    if r is not None and r.status_code != 200:
                        with lock:
                            errors.append(f"{name}: HTTP {r.status_code}")
                    with lock:
                        times[name].append(took)

        cpu0 = cpu_seconds(proc.pid)
        began = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
        load_cpu = cpu_seconds(proc.pid) - cpu0
        alone: dict[str, tuple[float, float]] = {}  # name -> (CPU ms, wall ms) per request
        if args.one_by_one:
            with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60) as c:
                calls = endpoints(c)
                for name in names:
                    calls[name]()
                    walls = []
                    before = cpu_seconds(proc.pid)
                    for _ in range(args.one_by_one):
                        t0 = time.perf_counter()
                        calls[name]()
                        walls.append(1000 * (time.perf_counter() - t0))
                    spent = 1000 * (cpu_seconds(proc.pid) - before) / args.one_by_one
                    alone[name] = (spent, statistics.median(walls))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    total = sum(len(v) for v in times.values())
    print(f"store: {args.db_url.split('@')[-1]}; {args.clients} clients x {args.rounds} rounds")
    head = f"{'endpoint':32} {'n':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}"
    if alone:
        head += f" | {'CPU':>6} {'wall':>6} one by one"
    print(head + "  (ms)")
    for name in names:
        ms = sorted(1000 * t for t in times[name])
        q = statistics.quantiles(ms, n=100, method="inclusive")
        line = f"{name:32} {len(ms):>5} {q[49]:>7.1f} {q[94]:>7.1f} {q[98]:>7.1f} {ms[-1]:>7.1f}"
        if name in alone:
            line += f" | {alone[name][0]:>6.1f} {alone[name][1]:>6.1f}"
        print(line)
    allms = sorted(1000 * t for v in times.values() for t in v)
    q = statistics.quantiles(allms, n=100, method="inclusive")
    print(f"{'all':32} {total:>5} {q[49]:>7.1f} {q[94]:>7.1f} {q[98]:>7.1f} {allms[-1]:>7.1f}")
    print(
        f"{total / wall:.0f} requests/s over {wall:.1f} s; server CPU {load_cpu:.1f} s "
        f"({1000 * load_cpu / max(total, 1):.1f} ms per request); {len(errors)} errors"
    )
    for e in errors[:10]:
        print("  " + e)
    return 0


if __name__ == "__main__":
    sys.exit(main())

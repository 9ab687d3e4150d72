"""Server time of the web UI's heaviest pages on a large store: prints p50/p95/p99.

    python benchmarks/fill_store.py sqlite:////tmp/big/phloem.db      # 100,000 runs, 1,000,000 TIs
    python benchmarks/ui_pages.py sqlite:////tmp/big/phloem.db [--requests 40]

On top of the filled history it registers the filled pipelines in the catalog, adds a
pipeline ``wide`` of 200 tasks in 10 groups with 25 runs (the grid of the last 25 runs x 200
tasks), and then times, in the server's own process (the ASGI app called in-process, so the
figure is the server's time, without a network):

- the pipelines page (every pipeline with its last 25 runs, next run, import errors);
- the grid of ``wide``;
- the page of the run ``mapped-1000`` (a task mapped over 1,000 instances: the graph, the
  counts, the timeline), and its live-state document that the page polls.

The target is 300 ms at p95 for each page. With ``--browser`` it also serves the app over HTTP
(uvicorn, in this process) and opens each page in Chromium (Debian's ``chromium``, driven by
Playwright) with an empty cache, reading the browser's own Navigation and Resource Timing:

- **interactive**: ``domContentLoadedEventEnd`` (the page is parsed and its deferred script
  has run, so its controls work), and ``loadEventEnd``;
- **main CPU**: the CPU time of the page's main thread in the browser (``ThreadTime`` of
  Chromium's performance metrics, median): parsing, style, layout and script, without the
  waiting that a busy machine adds to the wall times;
- **weight**: the bytes transferred for the page and everything it loaded (``transferSize``
  of the navigation and of each resource), and their size once decoded.

Targets: interactive within 1 s, under 500 KB. Figures, not a test: run it on the machine you
care about (a test asserts the page weight, which does not depend on the machine).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WIDE_GROUPS = 10
WIDE_PER_GROUP = 20
WIDE_RUNS = 25
PASSWORD = "benchmark password"


def wide_source() -> str:
    lines = ["import phloem", "from phloem import pipeline, task", ""]
    for g in range(WIDE_GROUPS):
        for t in range(WIDE_PER_GROUP):
            lines += ["@task", f"def s{g}_{t}(x: int = 0) -> int:", "    return x", ""]
    lines += ["@pipeline", "def wide():"]
    for g in range(WIDE_GROUPS):
        lines.append(f"    with phloem.group('g{g}'):")
        lines.append(f"        prev = s{g}_0()")
        for t in range(1, WIDE_PER_GROUP):
            lines.append(f"        prev = s{g}_{t}(prev)")
    return "\n".join(lines) + "\n"


def prepare(ph: Any, folder: Path) -> None:
    """Catalog rows for the filled pipelines, the ``wide`` pipeline and its runs, a user."""
    from sqlalchemy import update

    from phloem.accounts import manage
    from phloem.runs import create_run
    from phloem.scheduler.parsing import describe_pipelines
    from phloem.store import schema as s
    from phloem.store.types import PipelineInfo

    store = ph.store
    now = time.time()
    names = sorted({r.pipeline for r in store.list_runs(limit=2000)} - {"wide"})
    for name in names:
        store.catalog.sync_file(
            f"/srv/pipelines/{name}.py",
            [
                PipelineInfo(
                    name,
                    f"/srv/pipelines/{name}.py",
                    "0" * 16,
                    "@hourly" if name.endswith(("0", "4", "8")) else "@daily",
                    "UTC",
                    "2025-01-01T00:00:00+00:00",
                    False,
                    16,
                    (),
                )
            ],
            now,
        )
    file = folder / "wide.py"
    file.write_text(wide_source())
    store.catalog.sync_file(str(file), describe_pipelines(str(file)), now)
    if not store.list_runs("wide", limit=1):
        from phloem.loading import load_pipeline

        spec = load_pipeline(f"{file}:wide").spec
        rng = random.Random(3)
        for i in range(WIDE_RUNS):
            run = create_run(store, spec, {}, f"2026-01-{i + 1:02d}", source=f"{file}:wide")
            states = ["success", "failed", "running", "cached", "upstream_failed"]
            with store.engine.begin() as conn:  # type: ignore[attr-defined]
                for task_id in spec.tasks:
                    conn.execute(
                        update(s.task_instances)
                        .where(
                            s.task_instances.c.run_id == run.run_id,
                            s.task_instances.c.task_id == task_id,
                        )
                        .values(state=rng.choices(states, [90, 3, 3, 3, 1])[0])
                    )
    if store.accounts.user("bench") is None:
        manage.add_user(ph, "bench", "admin", PASSWORD)


def timed(client: Any, path: str, n: int) -> tuple[list[float], list[float], int]:
    """Wall time and CPU time (of this whole process, which does nothing else meanwhile) of
    ``n`` requests: on a busy machine the wall time includes waiting for a CPU, the CPU time
    does not."""
    for _ in range(2):  # warm caches (the graph import, SQLite pages)
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    took, cpu = [], []
    size = 0
    for _ in range(n):
        began, began_cpu = time.perf_counter(), time.process_time()
        r = client.get(path)
        took.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
        size = len(r.content)
    return took, cpu, size


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


#: what the browser reads after a page has loaded: Navigation Timing of the page, and the
#: bytes of it and of every resource it loaded
TIMING_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  const sum = (xs, k) => xs.reduce((a, x) => a + (x[k] || 0), 0);
  return {
    interactive: nav.domContentLoadedEventEnd, dom: nav.domInteractive, load: nav.loadEventEnd,
    ttfb: nav.responseStart, transferred: nav.transferSize + sum(res, "transferSize"),
    decoded: nav.decodedBodySize + sum(res, "decodedBodySize"), resources: res.length,
  };
}"""


def browser_times(app: Any, pages: list[tuple[str, str]], n: int) -> None:
    """Each page opened ``n`` times in Chromium, each time in a fresh context (empty cache)."""
    import socket
    import threading

    import uvicorn
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            print(f"\nin Chromium, empty cache, {n} loads per page (ms from navigation start)")
            print(
                f"{'page':36} {'inter. p50':>10} {'p95':>7} {'load p50':>9} {'p95':>7} "
                f"{'main CPU':>9} {'transferred':>12} {'decoded':>9}"
            )
            worst = 0.0
            heaviest = 0
            for label, path in pages:
                inter, load, cpu = [], [], []
                sent = decoded = 0
                for _ in range(n):
                    ctx = browser.new_context()
                    r = ctx.request.post(
                        base + "/api/v1/auth/login", data={"user": "bench", "password": PASSWORD}
                    )
                    assert r.ok, r.text()
                    page = ctx.new_page()
                    cdp = ctx.new_cdp_session(page)
                    cdp.send("Performance.enable")
                    page.goto(base + path, wait_until="load")
                    m = page.evaluate(TIMING_JS)
                    got = {
                        x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]
                    }
                    cpu.append(got["ThreadTime"] * 1000)
                    inter.append(m["interactive"])
                    load.append(m["load"])
                    sent, decoded = m["transferred"], m["decoded"]
                    ctx.close()
                worst = max(worst, pct(inter, 95))
                heaviest = max(heaviest, sent)
                print(
                    f"{label:36} {statistics.median(inter):8.0f}ms {pct(inter, 95):5.0f}ms "
                    f"{statistics.median(load):7.0f}ms {pct(load, 95):5.0f}ms "
                    f"{statistics.median(cpu):7.0f}ms "
                    f"{sent / 1024:9.1f} KB {decoded / 1024:6.1f} KB"
                )
            print(
                f"worst interactive p95: {worst:.0f} ms (target 1,000 ms); heaviest page: "
                f"{heaviest / 1024:.1f} KB transferred (target 500 KB)"
            )
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db_url")
    ap.add_argument("--requests", type=int, default=40, help="timed requests per page")
    ap.add_argument(
        "--browser",
        type=int,
        default=0,
        metavar="N",
        help="also open each page N times in Chromium (time to interactive, page weight)",
    )
    args = ap.parse_args(argv)

    from fastapi.testclient import TestClient

    from phloem.app import Phloem
    from phloem.server import create_app

    with tempfile.TemporaryDirectory() as tmp:
        ph = Phloem.open(args.db_url, Path(tmp) / "home")
        try:
            prepare(ph, Path(tmp))
            wide_runs = ph.store.list_runs("wide", limit=1)
            client = TestClient(create_app(ph))
            gc.freeze()  # as `phloem server` does once started
            r = client.post("/api/v1/auth/login", json={"user": "bench", "password": PASSWORD})
            assert r.status_code == 200, r.text
            pages = [
                ("pipelines page", "/"),
                (
                    f"grid, {WIDE_RUNS} runs x {WIDE_GROUPS * WIDE_PER_GROUP} tasks",
                    "/pipelines/wide",
                ),
                ("run, 1,000 mapped instances", "/runs/mapped-1000"),
                ("  its live states (polled)", "/runs/mapped-1000/live"),
                ("run of wide (200 tasks, graph)", f"/runs/{wide_runs[0].run_id}"),
            ]
            load = os.getloadavg()[0]
            print(
                f"store: {ph.store.display_url}; {args.requests} requests per page; "
                f"load average {load:.1f} on {os.cpu_count()} CPUs (figures grow with it)"
            )
            print(
                f"{'page':36} {'wall p50':>9} {'p95':>8} {'p99':>8} {'cpu p50':>9} "
                f"{'p95':>8} {'size':>9}"
            )
            worst = worst_cpu = 0.0
            for label, path in pages:
                took, cpu, size = timed(client, path, args.requests)
                worst = max(worst, pct(took, 95))
                worst_cpu = max(worst_cpu, pct(cpu, 95))
                print(
                    f"{label:36} {statistics.median(took) * 1000:7.1f}ms "
                    f"{pct(took, 95) * 1000:6.1f}ms {pct(took, 99) * 1000:6.1f}ms "
                    f"{statistics.median(cpu) * 1000:7.1f}ms {pct(cpu, 95) * 1000:6.1f}ms "
                    f"{size / 1024:7.1f}KB"
                )
            css = client.get("/ui/static/ui.css").content
            js = client.get("/ui/static/ui.js").content
            print(f"static: ui.css {len(css) / 1024:.1f} KB, ui.js {len(js) / 1024:.1f} KB")
            print(
                f"worst p95: {worst * 1000:.1f} ms wall, {worst_cpu * 1000:.1f} ms CPU "
                "(target 300 ms)"
            )
            client.close()
            if args.browser:
                browser_times(client.app, pages[:3] + pages[4:], args.browser)
        finally:
            ph.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

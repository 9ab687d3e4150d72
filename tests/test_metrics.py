"""``/metrics``: Prometheus figures computed from the store, checked by parsing the text and
by a real Prometheus server scraping a real phloem server."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import phloem
from phloem.alerts import on_failure, webhook
from phloem.states import RunState
from processes import Processes
from receivers import free_port, http_receiver, wait_for
from server_fixtures import Api, make_api


@phloem.task
def double(x: int) -> int:
    return 2 * x


@phloem.task(retries=1)
def fails_once(x: int, marker: str) -> int:
    from pathlib import Path

    if not Path(marker).exists():
        Path(marker).write_text("x")
        raise ValueError("first try fails")
    return x


@phloem.task
def broken(x: int) -> int:
    raise RuntimeError("no")


@phloem.pipeline
def good(x: int = 1) -> None:
    double(double(x))


@phloem.pipeline
def flaky(marker: str = "") -> None:
    fails_once(1, marker)


def _workload(ph: Any, tmp: Path, hook_url: str) -> None:
    """Three good runs, one run with a retried task, one failed run with an alert."""

    @phloem.pipeline(alerts=[on_failure(webhook(hook_url))])
    def bad() -> None:
        broken(1)

    for i in range(3):
        assert phloem.run(good, params={"x": i}, executor="inline", app=ph,
                          logical_date=f"2026-01-0{i + 1}").succeeded  # fmt: skip
    assert phloem.run(flaky, params={"marker": str(tmp / "m")}, executor="inline", app=ph).succeeded
    assert phloem.run(bad, executor="inline", app=ph).state is RunState.FAILED


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def metrics_api(tmp_path: Path) -> Iterator[Api]:
    a = make_api(f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "home", metrics_settle=0.0)
    yield a
    a.client.close()
    a.ph.close()


def test_what_attempts_cost_adds_up_by_task(metrics_api: Api) -> None:
    """Local workers measure each attempt's CPU time and peak RSS: /metrics adds them up by
    task, to the totals the store holds."""
    ph = metrics_api.ph
    for i in range(2):
        result = phloem.run(good, params={"x": i}, executor="local", workers=1, app=ph,
                            logical_date=f"2026-02-0{i + 1}")  # fmt: skip
        assert result.succeeded
    attempts = [a for r in ph.store.list_runs(pipeline="good") for a in ph.store.attempts(r.run_id)]
    assert len(attempts) == 4 and all(a.cpu_seconds is not None for a in attempts)
    assert all(a.peak_rss for a in attempts)
    m = _parse(metrics_api.get("viewer", "/metrics").text)
    cpu = m[("phloem_task_cpu_seconds_total", (("pipeline", "good"), ("task", "double")))]
    spent = [a.cpu_seconds or 0.0 for a in attempts if a.task_id == "double"]
    assert cpu == pytest.approx(sum(spent))
    assert m[("phloem_task_peak_rss_bytes_count", (("pipeline", "good"),))] == 4
    assert m[("phloem_task_peak_rss_bytes_sum", (("pipeline", "good"),))] == pytest.approx(
        float(sum(a.peak_rss or 0 for a in attempts))
    )
    assert not [k for k in m if k[0] == "phloem_task_gpu_seconds_total"]  # no GPU here


def test_metrics_count_a_known_workload(metrics_api: Api, tmp_path: Path) -> None:
    metrics_api.ph.store.set_pool("gpu", 2)
    with http_receiver() as hook:
        _workload(metrics_api.ph, tmp_path, hook.url)
        wait_for(lambda: hook.bodies, what="the failure alert")
        wait_for(lambda: metrics_api.ph.store.alerts.history()[0].state == "sent", what="sent")
    resp = metrics_api.get("viewer", "/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    m = _parse(resp.text)
    assert m[("phloem_runs_started_total", (("pipeline", "good"),))] == 3
    assert m[("phloem_runs_finished_total", (("pipeline", "good"), ("state", "success")))] == 3
    assert m[("phloem_runs_finished_total", (("pipeline", "bad"), ("state", "failed")))] == 1
    assert m[("phloem_attempts_total", (("pipeline", "good"), ("state", "success")))] == 6
    assert m[("phloem_attempts_total", (("pipeline", "flaky"), ("state", "up_for_retry")))] == 1
    assert m[("phloem_attempts_total", (("pipeline", "flaky"), ("state", "success")))] == 1
    assert m[("phloem_task_duration_seconds_count", (("pipeline", "good"),))] == 6
    assert m[("phloem_task_duration_seconds_bucket", (("le", "+Inf"), ("pipeline", "good")))] == 6
    assert m[("phloem_task_queue_wait_seconds_count", (("pipeline", "good"),))] == 6
    assert m[("phloem_alerts_sent_total", (("channel", "webhook"),))] == 1
    assert m[("phloem_attempts_running", ())] == 0
    assert m[("phloem_pool_slots", (("pool", "gpu"),))] == 2
    assert m[("phloem_pool_slots_used", (("pool", "gpu"),))] == 0
    assert ("phloem_db_errors_waited_out_total", (("process", "server"),)) in m
    # a second scrape adds nothing twice
    again = _parse(metrics_api.get("viewer", "/metrics").text)
    assert again[("phloem_runs_started_total", (("pipeline", "good"),))] == 3


def test_metrics_need_a_viewer_s_token(metrics_api: Api) -> None:
    assert metrics_api.get(None, "/metrics").status_code == 401
    assert metrics_api.get("viewer", "/metrics").status_code == 200


# -- a real Prometheus scraping a real server -------------------------------------------------


class _Server:
    """uvicorn serving the API on a free port, in a thread of this test."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, what="the server to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.load(resp)
    except OSError:
        return []
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_a_real_prometheus_scrapes_the_counts_of_a_known_workload(
    metrics_api: Api, tmp_path: Path, processes: Processes
) -> None:
    if shutil.which("prometheus") is None:  # .ci/run installs it
        pytest.fail("this test needs Prometheus: apt-get install -y prometheus")
    server = _Server(metrics_api.app)
    try:
        token = tmp_path / "token"
        token.write_text(metrics_api.tokens["viewer"])
        prom_port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: phloem\n"
            f"    authorization:\n      credentials_file: {token}\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
        )
        args = [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
        ]  # fmt: skip
        with open(tmp_path / "prometheus.log", "w") as log:
            prom = processes.start(args, stdout=log, stderr=subprocess.STDOUT)
        with http_receiver() as hook:
            _workload(metrics_api.ph, tmp_path, hook.url)
            wait_for(lambda: hook.bodies, what="the failure alert")

        def value(promql: str) -> float | None:
            r = _query(prom_port, promql)
            return float(r[0]["value"][1]) if r else None

        # Prometheus scraped the server (with the viewer's token) and counts what ran
        wait_for(lambda: value('up{job="phloem"}') == 1, timeout=60, what="a scrape")
        wait_for(
            lambda: value('sum(phloem_runs_finished_total{state="success"})') == 4,
            timeout=60,
            what="four runs counted as succeeded",
        )
        assert value('phloem_runs_finished_total{pipeline="bad",state="failed"}') == 1
        assert value('sum by (pipeline) (phloem_attempts_total{pipeline="good"})') == 6
        assert value('phloem_task_duration_seconds_count{pipeline="good"}') == 6
        assert value('phloem_attempts_total{pipeline="flaky",state="up_for_retry"}') == 1
        wait_for(lambda: value('phloem_alerts_sent_total{channel="webhook"}') == 1,
                 timeout=30, what="the alert counted")  # fmt: skip
        processes.stop(prom)
    finally:
        server.stop()


def test_each_scheduler_s_loop_and_database_waits_come_from_the_store(tmp_path: Path) -> None:
    """A scheduler publishes its own figures to the store; a server in another process shows
    them (``phloem server`` runs its scheduler in a child process)."""
    import time as _time

    from phloem.driver.timings import Durations

    turns = Durations()
    for seconds in (0.0005, 0.02, 0.02, 3.0):
        turns.observe(seconds)
    a = make_api("memory", tmp_path / "home")
    try:
        buckets, total, _ = turns.snapshot()
        a.ph.store.stats.publish("sched-1", "scheduler", buckets, total, 2, _time.time())
        a.ph.store.stats.publish("gone", "scheduler", buckets, total, 9, _time.time() - 3600)
        m = _parse(a.get("viewer", "/metrics").text)
    finally:
        a.client.close()
        a.ph.close()
    name = "phloem_scheduler_loop_duration_seconds"
    one = ("scheduler", "sched-1")
    assert m[(name + "_count", (one,))] == 4
    assert m[(name + "_bucket", (("le", "0.001"), one))] == 1
    assert m[(name + "_bucket", (("le", "0.025"), one))] == 3
    assert m[(name + "_bucket", (("le", "+Inf"), one))] == 4
    assert m[(name + "_sum", (one,))] == pytest.approx(3.0405)
    assert m[("phloem_db_errors_waited_out_total", (("process", "sched-1"),))] == 2
    assert ("phloem_db_errors_waited_out_total", (("process", "server"),)) in m
    assert ("phloem_db_errors_waited_out_total", (("process", "gone"),)) not in m  # stale

"""Prometheus metrics (``GET /metrics``): computed from the store when scraped, so they are
right whichever process drove the runs.

- Counters (runs started and finished, attempts ended, the task-duration and queue-wait
  histograms) add up the store's ``events`` table: each scrape reads the events written
  after the last one this collector saw (a few thousand rows at most between two scrapes),
  joined with their run's pipeline and their attempt's times, and adds them to its totals.
  Events newer than ``settle`` seconds are left for the next scrape, so a transaction that
  took an earlier id but committed later is still counted. A fresh server starts from the
  first event, so its totals are the store's whole history (no reset on restart); a very
  large store is caught up ``catch_up`` events per scrape.
- What attempts cost (CPU seconds, GPU seconds reserved on Ray, peak RSS), as their
  executors measured it, is added up from the same events: at each attempt's end, by
  pipeline and task.
- Gauges (runs and attempts running, pool slots, the oldest heartbeat's age) are read from
  the store's tables at scrape time.
- Alerts sent are counted from the alert delivery records, by channel.
- Two figures live in the process they describe: each scheduler's loop duration and the
  database errors it waited out. Schedulers publish them to the store every 10 s
  (``process_stats``, by scheduler id) and they are shown for those that published in the
  last ``STALE`` seconds, with the database errors this server process waited out itself.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from phloem.app import Phloem

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.metrics_core import Metric

    from phloem.store.stats import EventStat

#: buckets of the task duration and queue-wait histograms, in seconds
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                3600.0, 4 * 3600.0)  # fmt: skip
RUN_END_STATES = ("success", "failed")
#: a scheduler that has not published its figures for this long is left out
STALE = 600.0
#: buckets of the peak-RSS histogram, in bytes (64 MiB to 64 GiB)
RSS_BUCKETS = tuple(float(2**k) for k in range(26, 37))
#: the task states an attempt ends in
ATTEMPT_END_STATES = ("success", "failed", "up_for_retry", "up_for_reschedule", "skipped")


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


def _counter(
    name: str, doc: str, labels: list[str], values: Mapping[Any, float]
) -> CounterMetricFamily:
    """A counter family with one sample per label tuple, in label order."""
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts: dict[tuple[str, ...], list[int]] = {}
        self.sums: dict[tuple[str, ...], float] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def samples(self) -> Iterator[tuple[tuple[str, ...], list[tuple[str, float]], float]]:
        for labels, counts in self.counts.items():
            out, running = [], 0
            for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                running += n
                out.append((_bound(bound), float(running)))
            yield labels, out, self.sums[labels]


class StoreCollector:
    """A prometheus-client collector over one application's store."""

    def __init__(
        self,
        app: Phloem,
        *,
        settle: float = 5.0,
        catch_up: int = 200_000,
        clock: Any = time.time,
    ) -> None:
        self.app = app
        self.settle = settle
        self.catch_up = catch_up
        self.clock = clock
        self._lock = threading.Lock()
        self._last_id = 0
        self._runs_started: dict[str, int] = {}
        self._runs_finished: dict[tuple[str, str], int] = {}
        self._attempts: dict[tuple[str, str], int] = {}
        self._durations = _Histogram(TASK_BUCKETS)
        self._waits = _Histogram(TASK_BUCKETS)
        self._cpu: dict[tuple[str, str], float] = {}
        self._gpu: dict[tuple[str, str], float] = {}
        self._rss = _Histogram(RSS_BUCKETS)

    def _absorb(self) -> None:
        stats = self.app.store.stats
        settled = self.clock() - self.settle
        left = self.catch_up
        while left > 0:
            rows = stats.events_after(self._last_id, min(left, 50_000), settled_before=settled)
            if not rows:
                return
            for e in rows:
                if e.is_run:
                    if e.new_state == "running":
                        self._runs_started[e.pipeline] = self._runs_started.get(e.pipeline, 0) + 1
                    elif e.new_state in RUN_END_STATES:
                        k = (e.pipeline, e.new_state)
                        self._runs_finished[k] = self._runs_finished.get(k, 0) + 1
                elif e.new_state == "running":
                    if e.started_at is not None and e.queued_at is not None:
                        wait = max(0.0, e.started_at - e.queued_at)
                        self._waits.observe((e.pipeline,), wait)
                elif e.new_state in ATTEMPT_END_STATES and e.started_at is not None:
                    k = (e.pipeline, e.new_state)
                    self._attempts[k] = self._attempts.get(k, 0) + 1
                    end = e.ended_at if e.ended_at is not None else e.at
                    self._durations.observe((e.pipeline,), max(0.0, end - e.started_at))
                    self._add_cost(e)
            self._last_id = rows[-1].id
            left -= len(rows)

    def _add_cost(self, e: EventStat) -> None:
        key = (e.pipeline, e.task_id or "")
        if e.cpu_seconds is not None:
            self._cpu[key] = self._cpu.get(key, 0.0) + e.cpu_seconds
        if e.gpu_seconds is not None:
            self._gpu[key] = self._gpu.get(key, 0.0) + e.gpu_seconds
        if e.peak_rss is not None:
            self._rss.observe((e.pipeline,), float(e.peak_rss))

    def _costs(self) -> Iterator[Metric]:
        from prometheus_client.core import HistogramMetricFamily

        cpu = _counter(
            "phloem_task_cpu_seconds", "CPU time attempts used (user and system), by task.",
            ["pipeline", "task"], self._cpu,
        )  # fmt: skip
        gpu = _counter(
            "phloem_task_gpu_seconds",
            "GPU time reserved for attempts on Ray (GPUs held times wall time), by task.",
            ["pipeline", "task"],
            self._gpu,
        )
        rss = HistogramMetricFamily(
            "phloem_task_peak_rss_bytes", "Peak resident memory of attempts.", labels=["pipeline"]
        )
        for labels, buckets, total in self._rss.samples():
            rss.add_metric(list(labels), buckets, total)
        yield from (cpu, gpu, rss)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        store = self.app.store
        with self._lock:
            self._absorb()
            started = _counter(
                "phloem_runs_started", "Runs that started running (again after a retry).",
                ["pipeline"], {(p,): n for p, n in self._runs_started.items()},
            )  # fmt: skip
            finished = _counter(
                "phloem_runs_finished", "Runs that ended, by state.", ["pipeline", "state"],
                self._runs_finished,
            )  # fmt: skip
            attempts = _counter(
                "phloem_attempts", "Attempts that ended, by the state their task went to.",
                ["pipeline", "state"], self._attempts,
            )  # fmt: skip
            duration = HistogramMetricFamily(
                "phloem_task_duration_seconds", "How long attempts ran.", labels=["pipeline"]
            )
            for labels, buckets, total in self._durations.samples():
                duration.add_metric(list(labels), buckets, total)
            waits = HistogramMetricFamily(
                "phloem_task_queue_wait_seconds",
                "How long attempts waited from queued (ready) to running.",
                labels=["pipeline"],
            )
            for labels, buckets, total in self._waits.samples():
                waits.add_metric(list(labels), buckets, total)
            costs = list(self._costs())
        yield from (started, finished, attempts, duration, waits, *costs)

        now = store.stats.now()
        runs = GaugeMetricFamily(
            "phloem_runs_running", "Runs running now.", labels=["pipeline"]
        )
        for p, n in sorted(now.runs_running.items()):
            runs.add_metric([p], n)
        queued = GaugeMetricFamily(
            "phloem_runs_queued", "Runs waiting to start.", labels=["pipeline"]
        )
        for p, n in sorted(now.runs_queued.items()):
            queued.add_metric([p], n)
        yield runs
        yield queued
        yield GaugeMetricFamily(
            "phloem_attempts_running", "Attempts running now.", value=now.attempts_running
        )
        yield GaugeMetricFamily(
            "phloem_oldest_heartbeat_age_seconds",
            "Age of the oldest heartbeat of a running attempt (0: none runs).",
            value=now.oldest_heartbeat_age or 0.0,
        )
        sizes, used = store.pools(), store.pool_usage()
        slots = GaugeMetricFamily("phloem_pool_slots", "Slots of each pool.", labels=["pool"])
        taken = GaugeMetricFamily(
            "phloem_pool_slots_used", "Slots of each pool taken now.", labels=["pool"]
        )
        for name in sorted(set(sizes) | set(used)):
            if name in sizes:
                slots.add_metric([name], sizes[name])
            taken.add_metric([name], used.get(name, 0))
        yield slots
        yield taken
        counts = store.alerts.counts()
        sent = CounterMetricFamily(
            "phloem_alerts_sent", "Alerts delivered, by channel.", labels=["channel"]
        )
        pending = GaugeMetricFamily(
            "phloem_alerts_pending", "Alerts waiting to be delivered.", labels=["channel"]
        )
        failed = CounterMetricFamily(
            "phloem_alerts_failed", "Alerts given up on, by channel.", labels=["channel"]
        )
        by_state: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "sent": sent,
            "pending": pending,
            "failed": failed,
        }
        for (kind, state), n in sorted(counts.items()):
            by_state[state].add_metric([kind], n)
        yield from (sent, pending, failed)
        published = store.stats.published(self.clock() - STALE)
        waited = CounterMetricFamily(
            "phloem_db_errors_waited_out",
            "Database errors a process waited out instead of failing (this server, and each "
            "scheduler as it last published).",
            labels=["process"],
        )
        waited.add_metric(["server"], store.waited_out)
        loop = HistogramMetricFamily(
            "phloem_scheduler_loop_duration_seconds",
            "How long each turn of a scheduler's loop worked (waits excluded).",
            labels=["scheduler"],
        )
        for proc in published:
            waited.add_metric([proc.holder], proc.waited_out)
            if proc.role == "scheduler":
                loop.add_metric(
                    [proc.holder], [(_bound(b), float(n)) for b, n in proc.loop], proc.loop_sum
                )
        yield waited
        yield loop


def registry(app: Phloem, *, settle: float = 5.0) -> CollectorRegistry:
    """A registry of its own (never the process-wide default) holding the store collector."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(app, settle=settle))
    return reg


__all__ = ["StoreCollector", "registry"]

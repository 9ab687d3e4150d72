"""The scheduler service: discovery, triggers, backfill and run claiming."""

from phloem.scheduler.service import Scheduler, SchedulerConfig

__all__ = ["Scheduler", "SchedulerConfig"]

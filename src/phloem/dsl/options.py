"""Task options: one frozen record, validated once, with fix-it messages for typos."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from typing import Any

from phloem.errors import DefinitionError
from phloem.states import TriggerRule


@dataclass(frozen=True, slots=True)
class Resources:
    """What one attempt needs; executors that place work (Ray) honour it."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None  # bytes


@dataclass(frozen=True, slots=True)
class SensorOptions:
    poke_interval: float = 60.0
    timeout: float = 7 * 24 * 3600.0
    mode: str = "poke"  # or "reschedule"
    soft_fail: bool = False


@dataclass(frozen=True, slots=True)
class TaskOptions:
    name: str
    kind: str = "task"  # "task" | "branch" | "sensor"
    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    max_retry_delay: float | None = None
    retry_jitter: float = 0.0
    timeout: float | None = None
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    pool: str = "default"
    pool_slots: int = 1
    priority: int = 0
    resources: Resources = field(default_factory=Resources)
    tags: tuple[str, ...] = ()
    on_success: Callable[..., Any] | None = None
    on_failure: Callable[..., Any] | None = None
    on_retry: Callable[..., Any] | None = None
    sensor: SensorOptions | None = None
    outputs: tuple[str, ...] = ()  # names of the assets this task updates
    #: a clean-up task: runs whatever happened upstream (all_done unless told otherwise) and
    #: is left out when the run's state is decided, as Airflow's teardown tasks are
    teardown: bool = False
    #: options the author set on the task itself; pipeline defaults never override these
    explicit: frozenset[str] = frozenset()


#: Options an author may pass to ``@task(...)`` / ``with_options(...)``.
TASK_OPTION_NAMES = frozenset(
    f.name for f in fields(TaskOptions) if f.name not in ("kind", "sensor", "explicit")
)
SENSOR_OPTION_NAMES = frozenset({"poke_interval", "timeout", "mode", "soft_fail"})


def _seconds(value: object, option: str, where: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DefinitionError(
            f"{where}: option '{option}' must be seconds (a number) or a timedelta, got {value!r}"
        )
    if value < 0:
        raise DefinitionError(f"{where}: option '{option}' must not be negative, got {value!r}")
    return float(value)


def unknown_option(name: str, known: frozenset[str], where: str) -> DefinitionError:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = (
        f"; did you mean '{close[0]}'?" if close else f"; known options: {', '.join(sorted(known))}"
    )
    return DefinitionError(f"{where}: unknown option '{name}'{hint}")


def parse_trigger_rule(value: object, where: str) -> TriggerRule:
    if isinstance(value, TriggerRule):
        return value
    try:
        return TriggerRule(str(value))
    except ValueError:
        names = [r.value for r in TriggerRule]
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use one of: {', '.join(names)}"
        raise DefinitionError(f"{where}: unknown trigger rule '{value}'; {hint}") from None


def build_options(base: TaskOptions, overrides: Mapping[str, Any], where: str) -> TaskOptions:
    """Return ``base`` with ``overrides`` applied, validating every value."""
    changes: dict[str, Any] = {}
    sensor_changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if base.kind == "sensor" and key in SENSOR_OPTION_NAMES:
            sensor_changes[key] = value
            continue
        if key not in TASK_OPTION_NAMES:
            known = TASK_OPTION_NAMES | (SENSOR_OPTION_NAMES if base.kind == "sensor" else set())
            raise unknown_option(key, frozenset(known), where)
        changes[key] = value
    for key in ("retry_delay",):
        if key in changes:
            changes[key] = _seconds(changes[key], key, where)
    for key in ("max_retry_delay", "timeout"):
        if changes.get(key) is not None:
            changes[key] = _seconds(changes[key], key, where)
            if key == "timeout" and changes[key] <= 0:
                raise DefinitionError(f"{where}: option 'timeout' must be positive")
    if "retries" in changes:
        r = changes["retries"]
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise DefinitionError(f"{where}: option 'retries' must be an int >= 0, got {r!r}")
    if "retry_backoff" in changes:
        b = changes["retry_backoff"]
        if isinstance(b, bool):  # Airflow's retry_exponential_backoff=True habit
            b = 2.0 if b else 1.0
        if not isinstance(b, (int, float)) or b < 1:
            raise DefinitionError(
                f"{where}: option 'retry_backoff' is a multiplier >= 1 (2.0 doubles the delay "
                f"each retry), got {b!r}"
            )
        changes["retry_backoff"] = float(b)
    if "retry_jitter" in changes:
        j = changes["retry_jitter"]
        if isinstance(j, bool):
            j = 0.5 if j else 0.0
        if not isinstance(j, (int, float)) or not 0 <= j <= 1:
            raise DefinitionError(
                f"{where}: option 'retry_jitter' is a fraction between 0 and 1, got {j!r}"
            )
        changes["retry_jitter"] = float(j)
    if "trigger_rule" in changes:
        changes["trigger_rule"] = parse_trigger_rule(changes["trigger_rule"], where)
    for key in ("pool_slots", "priority"):
        if key in changes:
            v = changes[key]
            if isinstance(v, bool) or not isinstance(v, int) or (key == "pool_slots" and v < 1):
                raise DefinitionError(f"{where}: option '{key}' must be an int, got {v!r}")
    if "pool" in changes and (not isinstance(changes["pool"], str) or not changes["pool"]):
        raise DefinitionError(
            f"{where}: option 'pool' must be a pool name, got {changes['pool']!r}"
        )
    if "resources" in changes:
        changes["resources"] = _resources(changes["resources"], where)
    if "tags" in changes:
        changes["tags"] = tuple(changes["tags"])
    if "outputs" in changes:
        from phloem.dsl.assets import asset_names

        changes["outputs"] = asset_names(changes["outputs"], where)
    if "name" in changes:
        name = changes["name"]
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise DefinitionError(
                f"{where}: task name must be a non-empty string without '.' or '/', got {name!r}"
            )
    for key in ("on_success", "on_failure", "on_retry"):
        if changes.get(key) is not None and not callable(changes[key]):
            raise DefinitionError(f"{where}: option '{key}' must be callable")
    if (
        changes.get("teardown")
        and "trigger_rule" not in changes
        and ("trigger_rule" not in base.explicit)
    ):
        changes["trigger_rule"] = TriggerRule.ALL_DONE
    opts = replace(base, **changes, explicit=base.explicit | frozenset(overrides))
    if sensor_changes:
        opts = replace(opts, sensor=_sensor(opts.sensor or SensorOptions(), sensor_changes, where))
    return opts


def _resources(value: object, where: str) -> Resources:
    if isinstance(value, Resources):
        return value
    if not isinstance(value, Mapping):
        raise DefinitionError(f"{where}: 'resources' must be a dict like {{'cpus': 2, 'gpus': 1}}")
    allowed = {"cpus", "gpus", "memory"}
    for key in value:
        if key not in allowed:
            raise unknown_option(str(key), frozenset(allowed), f"{where} resources")
    memory = value.get("memory")
    if isinstance(memory, str):
        memory = _parse_memory(memory, where)
    return Resources(
        cpus=float(value.get("cpus", 1.0)), gpus=float(value.get("gpus", 0.0)), memory=memory
    )


def _parse_memory(text: str, where: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise DefinitionError(
            f"{where}: cannot read memory size {text!r}; write e.g. '4GiB'"
        ) from None


def _sensor(base: SensorOptions, changes: Mapping[str, Any], where: str) -> SensorOptions:
    out = dict(changes)
    if "poke_interval" in out:
        out["poke_interval"] = _seconds(out["poke_interval"], "poke_interval", where)
    if "timeout" in out:
        out["timeout"] = _seconds(out["timeout"], "timeout", where)
    if "mode" in out and out["mode"] not in ("poke", "reschedule"):
        raise DefinitionError(
            f"{where}: sensor mode must be 'poke' or 'reschedule', got {out['mode']!r}"
        )
    return replace(base, **out)

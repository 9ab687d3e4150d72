"""Task, sensor and pipeline options, each declared once: name, type, default, check, and one
line of documentation (see ``declare``). Validation, the hints for unknown names and the README
tables (``python -m phloem.dsl.docs``) all come from these declarations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Any

from phloem.alerts.rules import Rule, check_rules
from phloem.dsl import kinds
from phloem.dsl.assets import asset_names
from phloem.dsl.breaker import Breaker, breaker_option
from phloem.dsl.cache import Cache, cache_option
from phloem.dsl.declare import declared, option
from phloem.dsl.foreign import foreign_name
from phloem.dsl.hints import did_you_mean, likely_meant
from phloem.dsl.names import check_name
from phloem.errors import AlertError, DefinitionError
from phloem.states import SensorMode, TriggerRule


def _memory(value: Any, option: str, where: str) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    if not isinstance(value, str):
        raise DefinitionError(f"{where}: option '{option}' must be bytes or text like '4GiB'")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = value.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        size = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        size = -1
    if size < 0:
        raise DefinitionError(f"{where}: cannot read memory size {value!r}; write e.g. '4GiB'")
    return size


def _factor(value: Any, option: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 1:
        raise DefinitionError(
            f"{where}: option '{option}' must be a number > 1 (2.0 doubles the memory), "
            f"got {value!r}"
        )
    return float(value)


def _custom(value: Any, option: str, where: str) -> tuple[tuple[str, float], ...]:
    """Named amounts (``{"big_disk": 1}``), kept as sorted pairs so options stay hashable."""
    if value is None:
        return ()
    if isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise DefinitionError(
            f"{where}: option '{option}' must be a dict of resource names to amounts, "
            f"like {{'big_disk': 1}}, got {value!r}"
        )
    reserved = {"cpu", "gpu", "memory", "cpus", "gpus", "object_store_memory"}
    for name in value:
        if name.lower() in reserved:
            raise DefinitionError(
                f"{where}: '{name}' is not a custom resource; give 'cpus', 'gpus' or 'memory' "
                "in resources itself, e.g. resources={'gpus': 1, 'custom': {'big_disk': 1}}"
            )
    return tuple(sorted((k, _amount(v, f"{option}.{k}", where)) for k, v in value.items()))


#: the most instances one message to a worker may carry (``batch_size``)
MAX_BATCH_SIZE = 10_000


def _batch_size(value: Any, option: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH_SIZE:
        raise DefinitionError(
            f"{where}: option '{option}' must be an int from 1 to {MAX_BATCH_SIZE:,} (how many "
            "mapped instances go to a worker in one message; 1 sends each alone, None lets "
            f"phloem choose), got {value!r}"
        )
    return value


def _amount(value: Any, option: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise DefinitionError(f"{where}: option '{option}' must be a number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Resources:
    """What one attempt needs; executors that place work (Ray) honour it."""

    cpus: float = option(1.0, kinds.kind("number", _amount), "CPUs one attempt needs")
    gpus: float = option(0.0, kinds.kind("number", _amount), "GPUs one attempt needs")
    memory: int | None = option(
        None, kinds.kind("bytes or text", _memory), "memory in bytes, or text such as `'4GiB'`"
    )
    custom: tuple[tuple[str, float], ...] = option(
        (),
        kinds.kind("dict", _custom),
        "other resources by name (Ray custom resources): `{'big_disk': 1}`",
        shown="none",
    )


@dataclass(frozen=True, slots=True)
class SensorOptions:
    poke_interval: float = option(60.0, kinds.SECONDS, "time between two checks")
    timeout: float = option(
        7 * 24 * 3600.0, kinds.SECONDS, "how long to wait before failing", shown="7 days"
    )
    mode: SensorMode = option(
        SensorMode.POKE,
        kinds.choice_of(SensorMode),
        "`poke` keeps its worker slot while waiting, `reschedule` gives it back between checks",
        shown='`"poke"`',
    )
    soft_fail: bool = option(False, kinds.BOOL, "skip instead of failing when it times out")


def _trigger_rule(value: Any, option: str, where: str) -> TriggerRule:
    if isinstance(value, TriggerRule):
        return value
    try:
        return TriggerRule(str(value))
    except ValueError:
        hint = did_you_mean(str(value), [r.value for r in TriggerRule], "use one of")
        raise DefinitionError(f"{where}: unknown trigger rule '{value}'{hint}") from None


def _resources(value: Any, option: str, where: str) -> Resources:
    if isinstance(value, Resources):
        return value
    if not isinstance(value, Mapping):
        raise DefinitionError(f"{where}: 'resources' must be a dict like {{'cpus': 2, 'gpus': 1}}")
    return Resources(**coerce_all(Resources, "resources", value, f"{where} resources"))


def _task_name(value: Any, option: str, where: str) -> str:
    return check_name(value, "task", where)


def _assets(value: Any, option: str, where: str) -> tuple[str, ...]:
    return asset_names(value, where)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    name: str = option(
        kind=kinds.kind("string", _task_name), doc="the task's name", shown="the function's name"
    )
    kind: str = "task"  # "task" | "branch" | "sensor"
    retries: int = option(0, kinds.COUNT, "attempts after the first failure")
    retry_delay: float = option(0.0, kinds.SECONDS, "wait before the first retry")
    retry_backoff: float = option(
        1.0, kinds.MULTIPLIER, "multiplies the delay each retry (2.0 doubles it; True means 2.0)"
    )
    max_retry_delay: float | None = option(
        None, kinds.OPTIONAL_SECONDS, "upper bound of the delay between retries"
    )
    retry_jitter: float = option(
        0.0, kinds.FRACTION, "spread each delay randomly by up to this fraction (True means 0.5)"
    )
    retry_on: tuple[type[BaseException], ...] = option(
        (),
        kinds.EXCEPTIONS,
        "retry only failures of these exception classes; others fail at once",
        shown="every exception",
    )
    no_retry_on: tuple[type[BaseException], ...] = option(
        (), kinds.EXCEPTIONS, "failures of these exception classes are never retried", shown="none"
    )
    timeout: float | None = option(
        None, kinds.OPTIONAL_POSITIVE_SECONDS, "an attempt running longer fails (and may retry)"
    )
    trigger_rule: TriggerRule = option(
        TriggerRule.ALL_SUCCESS,
        kinds.kind("trigger rule", _trigger_rule),
        "when the task runs, given its upstream tasks' states (see below)",
    )
    pool: str = option("default", kinds.TEXT, "the pool whose slots the task takes")
    pool_slots: int = option(1, kinds.POSITIVE_INT, "slots of the pool one attempt takes")
    priority: int = option(0, kinds.INT, "higher runs first when tasks wait for a slot")
    resources: Resources = option(
        factory=Resources,
        kind=kinds.kind("dict", _resources),
        doc="what one attempt needs: `{'cpus': 2, 'gpus': 1, 'memory': '4GiB'}` (see Ray)",
        shown="1 CPU",
    )
    retry_memory_factor: float | None = option(
        None,
        kinds.kind("number > 1", _factor),
        "after an attempt runs out of its `resources` memory, retry with this many times more "
        "(up to `max_memory`)",
        shown="none",
    )
    max_memory: int | None = option(
        None,
        kinds.kind("bytes or text", _memory),
        "the most memory `retry_memory_factor` may give an attempt",
        shown="no cap",
    )
    batch_size: int | None = option(
        None,
        kinds.kind("int from 1 to 10,000", _batch_size),
        "mapped instances sent to a worker in one message (each keeps its own state, tries, "
        "output and log); 1 sends each alone; sensors never batch",
        shown="automatic: tiny instances travel in batches",
    )
    tags: tuple[str, ...] = option((), kinds.TAGS, "labels for listings and filters")
    on_success: Callable[..., Any] | None = option(
        None, kinds.CALLBACK, "called (with run, task, try and state) when the task succeeds"
    )
    on_failure: Callable[..., Any] | None = option(
        None, kinds.CALLBACK, "called (with run, task, try and error) when the task fails for good"
    )
    on_retry: Callable[..., Any] | None = option(
        None,
        kinds.CALLBACK,
        "called (with run, task, try and error) when a failed attempt will be retried",
    )
    sensor: SensorOptions | None = None
    outputs: tuple[str, ...] = option(
        (), kinds.kind("list of Assets", _assets), "the assets this task updates"
    )
    cache: Cache | None = option(
        None,
        kinds.kind("True or phloem.Cache(...)", cache_option),
        "reuse the output of an earlier run with the same code, libraries and inputs "
        "(`phloem.Cache(expire=..., version=..., key=...)`; see Caching)",
        shown="off",
    )
    breaker: Breaker | None = option(
        None,
        kinds.kind("a breaker's name or phloem.Breaker(...)", breaker_option),
        "a circuit breaker shared through the store: while it is open, attempts fail fast "
        "(see Circuit breakers)",
        shown="none",
    )
    #: a clean-up task: runs whatever happened upstream (all_done unless told otherwise) and
    #: is left out when the run's state is decided, as Airflow's teardown tasks are
    teardown: bool = option(
        False,
        kinds.BOOL,
        "a clean-up task: runs whatever happened upstream, does not decide the run's state",
    )
    #: options the author set on the task itself; pipeline defaults never override these
    explicit: frozenset[str] = frozenset()


def _start_date(value: Any, option: str, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            return _start_date(datetime.fromisoformat(value), option, where)
        except ValueError:
            pass
    raise DefinitionError(f"{where}: start_date must be a datetime or ISO date, got {value!r}")


def _pipeline_name(value: Any, option: str, where: str) -> str | None:
    return None if value is None else check_name(value, "pipeline", where)


def _task_defaults(value: Any, option: str, where: str) -> Mapping[str, Any]:
    defaults = _mapping(value, option, where)
    if "name" in defaults:
        raise DefinitionError(
            f"{where}: default_task_options cannot set 'name': each task has its own; name a "
            "call with task.with_options(name=...)"
        )
    build_options(TaskOptions(name="x"), defaults, f"{where}: default_task_options")
    return defaults


def _mapping(value: Any, option: str, where: str) -> Mapping[str, Any]:
    out: Mapping[str, Any] = kinds.MAPPING.coerce(value, option, where)
    return out


def _description(value: Any, option: str, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise DefinitionError(f"{where}: option 'description' must be text, got {value!r}")
    return value


def _alerts(value: Any, option: str, where: str) -> tuple[Rule, ...]:
    try:
        return check_rules(value, where)
    except AlertError as exc:
        raise DefinitionError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """What ``@pipeline(...)`` accepts; the body's own parameters are run parameters too."""

    name: str | None = option(
        None,
        kinds.kind("string", _pipeline_name),
        "the pipeline's name",
        shown="the function's name",
    )
    schedule: Any = option(
        None,
        kinds.ANY,
        "cron text, a preset such as `@daily`, a timedelta, `@continuous`, or a list of "
        "Assets; none: manual runs only",
    )
    start_date: datetime | None = option(
        None, kinds.kind("datetime or ISO date", _start_date), "the first logical date"
    )
    catchup: bool = option(False, kinds.BOOL, "run the intervals missed since `start_date`")
    max_active_runs: int = option(16, kinds.POSITIVE_INT, "runs of this pipeline at once")
    max_active_tasks: int | None = option(
        None, kinds.OPTIONAL_POSITIVE_INT, "tasks of one run running at once"
    )
    params: Mapping[str, Any] = option(
        factory=dict, kind=kinds.MAPPING, doc="run parameters and their defaults", shown="none"
    )
    default_task_options: Mapping[str, Any] = option(
        factory=dict,
        kind=kinds.kind("dict", _task_defaults),
        doc="task options for every task that does not set them itself",
        shown="none",
    )
    tags: tuple[str, ...] = option((), kinds.TAGS, "labels for listings and filters")
    owner: str | None = option(
        None, kinds.OPTIONAL_TEXT, "who answers for the pipeline; shown in listings"
    )
    description: str | None = option(
        None, kinds.kind("string", _description), "shown in listings", shown="the docstring"
    )
    timeout: float | None = option(
        None,
        kinds.OPTIONAL_POSITIVE_SECONDS,
        "a run unfinished this long after it started fails and its attempts are stopped",
    )
    retries: int = option(
        0,
        kinds.COUNT,
        "a failed run runs its failed tasks again, keeping what succeeded (task retries: "
        "`default_task_options`)",
    )
    retry_delay: float = option(0.0, kinds.SECONDS, "wait before a run retry")
    on_retry: Callable[..., Any] | None = option(
        None, kinds.CALLBACK, "called (with the run's id, pipeline and failed tasks) on a run retry"
    )
    on_success: Callable[..., Any] | None = option(
        None, kinds.CALLBACK, "called (with the run's id, pipeline and state) when a run succeeds"
    )
    on_failure: Callable[..., Any] | None = option(
        None,
        kinds.CALLBACK,
        "called (with the run's id, pipeline, state and failed tasks) when a run fails",
    )
    timezone: str = option("UTC", kinds.TEXT, "the time zone the schedule is read in")
    alerts: tuple[Rule, ...] = option(
        (),
        kinds.kind("list of alert rules", _alerts),
        "rules that alert by webhook, e-mail or a function: `[on_failure(email('ml@x.org'))]` "
        "(see Alerts)",
        shown="none",
    )


#: the options each decorator accepts, for hints that say where a misplaced option belongs
SCOPES: dict[str, type] = {
    "task": TaskOptions,
    "sensor": SensorOptions,
    "pipeline": PipelineOptions,
    "resources": Resources,
}
TASK_OPTION_NAMES = frozenset(declared(TaskOptions))
SENSOR_OPTION_NAMES = frozenset(declared(SensorOptions))
PIPELINE_OPTION_NAMES = frozenset(declared(PipelineOptions))


def coerce_all(cls: type, scope: str, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check and normalize ``values`` against the options ``cls`` declares."""
    options = declared(cls)
    out: dict[str, Any] = {}
    for key, value in values.items():
        opt = options.get(key)
        if opt is None:
            raise unknown_option(str(key), scope, where)
        out[key] = opt.coerce(value, where)
    return out


def unknown_option(name: str, scope: str, where: str) -> DefinitionError:
    """An error for ``name`` given to ``scope`` that only suggests what the author meant."""
    known = set(declared(SCOPES[scope]))
    if scope == "sensor":
        known |= TASK_OPTION_NAMES
    prefix = f"{where}: unknown option '{name}'"
    elsewhere = _belongs_elsewhere(name, scope)
    if elsewhere:
        return DefinitionError(f"{prefix}: {elsewhere}")
    foreign = foreign_name(name, "pipeline" if scope == "pipeline" else "task")
    if foreign is not None and scope != "resources":
        if foreign.same is not None:
            text = (
                f"that is {foreign.origin}'s spelling: write phloem's '{foreign.same}' "
                f"({foreign.advice})"
            )
        else:
            text = f"{foreign.origin} has it, phloem does not: {foreign.advice}"
        return DefinitionError(f"{prefix}: {text}")
    if scope != "resources" and likely_meant(name, known) is None:
        others = (TASK_OPTION_NAMES | SENSOR_OPTION_NAMES | PIPELINE_OPTION_NAMES) - known
        meant = likely_meant(name, others)
        elsewhere = _belongs_elsewhere(meant, scope) if meant else None
        if elsewhere:
            return DefinitionError(f"{prefix}; did you mean '{meant}'? {elsewhere}")
    return DefinitionError(prefix + did_you_mean(name, known, "known options"))


def _belongs_elsewhere(name: str, scope: str) -> str | None:
    if scope in ("task", "sensor") and name in PIPELINE_OPTION_NAMES:
        return f"'{name}' is an option of @pipeline(...), not of a task"
    if scope == "task" and name in SENSOR_OPTION_NAMES:
        return f"'{name}' is an option of sensors: define the task with @phloem.sensor(...)"
    if scope == "pipeline" and name in TASK_OPTION_NAMES | SENSOR_OPTION_NAMES:
        return (
            f"'{name}' is a task option; give it to every task with "
            f"default_task_options={{'{name}': ...}}, or set it on the tasks themselves"
        )
    return None


def build_options(base: TaskOptions, overrides: Mapping[str, Any], where: str) -> TaskOptions:
    """Return ``base`` with ``overrides`` applied, validating every value."""
    is_sensor = base.kind == "sensor"
    sensor_values = {k: v for k, v in overrides.items() if is_sensor and k in SENSOR_OPTION_NAMES}
    task_values = {k: v for k, v in overrides.items() if k not in sensor_values}
    changes = coerce_all(TaskOptions, "sensor" if is_sensor else "task", task_values, where)
    if changes.get("teardown") and not {"trigger_rule"} & (changes.keys() | base.explicit):
        changes["trigger_rule"] = TriggerRule.ALL_DONE
    opts = replace(base, **changes, explicit=base.explicit | frozenset(overrides))
    _check_memory(opts, where)

    if sensor_values:
        sensor = coerce_all(SensorOptions, "sensor", sensor_values, where)
        opts = replace(opts, sensor=replace(opts.sensor or SensorOptions(), **sensor))
    return opts


def _check_memory(opts: TaskOptions, where: str) -> None:
    """Memory escalation starts from the task's declared memory and stays under its cap."""
    memory = opts.resources.memory
    if opts.retry_memory_factor is not None and not memory:
        raise DefinitionError(
            f"{where}: retry_memory_factor needs the memory of the first attempt: add "
            "resources={'memory': '2GiB'}"
        )
    if opts.retry_memory_factor is not None and opts.retries < 1:
        raise DefinitionError(
            f"{where}: retry_memory_factor grows the memory of retries, and the task has none: "
            "add retries=N"
        )
    if opts.max_memory is not None and memory and opts.max_memory < memory:
        raise DefinitionError(
            f"{where}: max_memory ({opts.max_memory} bytes) is less than resources memory "
            f"({memory} bytes)"
        )


def pipeline_options(values: Mapping[str, Any], where: str) -> PipelineOptions:
    """The checked options of ``@pipeline(...)``."""
    return PipelineOptions(**coerce_all(PipelineOptions, "pipeline", values, where))

"""``@pipeline``: runs the body once, at definition time, to build a validated PipelineSpec."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from phloem.dsl.assets import asset_names, is_asset_schedule
from phloem.dsl.builder import Builder, caller_location, current_builder
from phloem.dsl.names import check_name
from phloem.dsl.options import PipelineOptions, build_options, pipeline_options
from phloem.dsl.params import param_spec
from phloem.dsl.refs import ParamRef
from phloem.dsl.spec import ParamSpec, PipelineSpec
from phloem.errors import DefinitionError


class Pipeline:
    """A defined pipeline: ``spec`` is its validated graph; run it with ``phloem.run``."""

    def __init__(self, spec: PipelineSpec, fn: Callable[..., Any]) -> None:
        self.spec = spec
        self.fn = fn
        self.__doc__ = fn.__doc__

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise DefinitionError(
            f"pipeline '{self.name}' is not called directly; run it with "
            f"phloem.run({self.name}) or `phloem run FILE:{self.name}`"
        )

    def __repr__(self) -> str:
        return f"<phloem pipeline {self.name} ({len(self.spec.tasks)} tasks)>"


def pipeline(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Define a pipeline from a function whose body calls tasks.

    The body's own parameters (with defaults) become run parameters, alongside ``params=``.
    """
    opts = pipeline_options(options, f"{caller_location()}: @pipeline")

    def wrap(f: Callable[..., Any]) -> Pipeline:
        return _build(f, opts, _where(f))

    return wrap(fn) if fn is not None else wrap


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return caller_location(3)
    return f"{code.co_filename}:{code.co_firstlineno}"


def _build(fn: Callable[..., Any], opts: PipelineOptions, where: str) -> Pipeline:
    if current_builder() is not None:
        raise DefinitionError(f"{where}: pipelines cannot be nested")
    name = opts.name or check_name(fn.__name__, "pipeline", where)
    params = _param_specs(fn, opts.params, where)
    builder = Builder(name, params)
    refs = {p: ParamRef(p) for p in inspect.signature(fn).parameters}
    with builder.active():
        fn(**refs)
    if opts.default_task_options:
        _apply_defaults(builder, opts.default_task_options, where)
    schedule_value = opts.schedule
    schedule = None
    assets: tuple[str, ...] = ()
    if is_asset_schedule(schedule_value):
        assets = asset_names(schedule_value or (), where)
        schedule_value = None
    elif schedule_value is not None:
        from phloem.schedules import parse_schedule

        try:
            schedule = parse_schedule(schedule_value, opts.timezone)
        except DefinitionError as exc:
            raise DefinitionError(f"{where}: pipeline '{name}': {exc}") from None
    spec = builder.build(
        schedule=schedule,
        schedule_text=_schedule_text(schedule_value),
        assets=assets,
        timezone=opts.timezone,
        start_date=opts.start_date,
        catchup=opts.catchup,
        max_active_runs=opts.max_active_runs,
        max_active_tasks=opts.max_active_tasks,
        tags=opts.tags,
        description=opts.description or inspect.getdoc(fn),
        owner=opts.owner,
        timeout=opts.timeout,
        retries=opts.retries,
        retry_delay=opts.retry_delay,
        on_retry=opts.on_retry,
        on_success=opts.on_success,
        on_failure=opts.on_failure,
        alerts=opts.alerts,
        source_file=inspect.getsourcefile(fn),
        defined_at=where,
        code_hash=_code_hash(fn),
    )
    return Pipeline(spec, fn)


def _apply_defaults(builder: Builder, defaults: Mapping[str, Any], where: str) -> None:
    for draft in builder.drafts.values():
        # explicit task options win over pipeline defaults, even when equal to the built-in
        fill = {k: v for k, v in defaults.items() if k not in draft.options.explicit}
        draft.options = build_options(draft.options, fill, f"{where}: default_task_options")


def _schedule_text(value: object) -> str | None:
    """How the schedule is stored for the scheduler: cron text, or ``@every <seconds>s``."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return f"@every {value.total_seconds():g}s"
    return str(value)


def _param_specs(
    fn: Callable[..., Any], declared: Mapping[str, Any], where: str
) -> dict[str, ParamSpec]:
    specs: dict[str, ParamSpec] = {}
    sig = inspect.signature(fn)
    hints = _annotations(fn)
    for pname, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise DefinitionError(f"{where}: pipeline parameters cannot be *args or **kwargs")
        default = declared.get(pname, p.default)
        if default is inspect.Parameter.empty:
            raise DefinitionError(
                f"{where}: pipeline parameter '{pname}' needs a default value (runs may "
                "override it with --param or params=)"
            )
        specs[pname] = param_spec(pname, default, hints.get(pname), where)
    for pname, default in declared.items():
        if pname not in specs:
            specs[pname] = param_spec(pname, default, None, where)
    return specs


def _annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return inspect.get_annotations(fn, eval_str=True)
    except Exception:
        return {}


def _code_hash(fn: Callable[..., Any]) -> str:
    """A hash of the pipeline's source file: every run records which code it ran."""
    h = hashlib.sha256()
    try:
        src = inspect.getsourcefile(fn)
        if src:
            with open(src, "rb") as fh:
                h.update(fh.read())
        else:
            h.update(inspect.getsource(fn).encode())
    except (OSError, TypeError):
        h.update(fn.__qualname__.encode())
    return h.hexdigest()[:16]

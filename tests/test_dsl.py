"""Definition-time behaviour: graphs, names, options, and errors with file, line and a fix."""

from __future__ import annotations

from datetime import timedelta

import pytest

import phloem
from phloem import DefinitionError, group, pipeline, task
from phloem.states import TriggerRule


@task
def one() -> int:
    return 1


@task
def add(a: int, b: int = 0) -> int:
    return a + b


@task
def total(xs: list[int]) -> int:
    return sum(xs)


def test_data_and_order_edges_build_a_topological_graph() -> None:
    @pipeline
    def p() -> None:
        a = one()
        b = add(a, 2)
        c = add.with_options(name="c")(1)
        c >> b

    spec = p.spec
    assert list(spec.tasks) == ["one", "c", "add"] or list(spec.tasks) == ["c", "one", "add"]
    assert set(spec.tasks["add"].upstream) == {"one", "c"}
    assert spec.tasks["add"].data_upstream == ("one",)
    assert spec.leaves == ("add",)


def test_repeated_calls_get_airflow_style_suffixes() -> None:
    @pipeline
    def p() -> None:
        one()
        one()
        one()

    assert list(p.spec.tasks) == ["one", "one__1", "one__2"]


def test_groups_prefix_ids_and_nest() -> None:
    @pipeline
    def p() -> None:
        with group("features"):
            a = one()
            with group("inner"):
                add(a)

    assert set(p.spec.tasks) == {"features.one", "features.inner.add"}
    assert p.spec.tasks["features.inner.add"].group == "features.inner"


def test_lists_with_rshift_both_directions() -> None:
    @pipeline
    def p() -> None:
        a, b, c, d = one(), one(), one(), one()
        a >> [b, c]
        [b, c] >> d

    t = p.spec.tasks
    assert set(t["one__1"].upstream) == {"one"}
    assert set(t["one__3"].upstream) == {"one__1", "one__2"}


def test_cycle_is_reported_with_its_path_and_location() -> None:
    with pytest.raises(phloem.CycleError) as info:

        @pipeline
        def cyclic() -> None:
            a = one()
            b = add(a)
            b >> a

    msg = str(info.value)
    assert "cycle" in msg and "one" in msg and "add" in msg
    assert "test_dsl.py:" in msg


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(phloem.CycleError):

        @pipeline
        def p() -> None:
            a = one()
            a >> a


def test_unknown_task_option_suggests_the_right_one() -> None:
    with pytest.raises(DefinitionError, match="did you mean 'retries'"):

        @task(retires=3)
        def t() -> None: ...


def test_unknown_trigger_rule_suggests() -> None:
    with pytest.raises(DefinitionError, match="did you mean 'all_done'"):

        @task(trigger_rule="all_dne")
        def t() -> None: ...


def test_options_are_validated_and_normalized() -> None:
    @task(
        retries=2,
        retry_delay=timedelta(seconds=3),
        retry_backoff=True,
        timeout=5,
        trigger_rule="none_failed",
        resources={"cpus": 2, "memory": "1GiB"},
    )
    def t() -> None: ...

    o = t.options
    assert (o.retries, o.retry_delay, o.retry_backoff, o.timeout) == (2, 3.0, 2.0, 5.0)
    assert o.trigger_rule is TriggerRule.NONE_FAILED
    assert o.resources.cpus == 2 and o.resources.memory == 1024**3
    for bad in (
        {"retries": -1},
        {"retry_delay": "soon"},
        {"timeout": 0},
        {"retry_jitter": 2},
        {"pool_slots": 0},
    ):
        with pytest.raises(DefinitionError):
            task(**bad)(lambda: None)


def test_task_of_another_pipeline_is_refused() -> None:
    holder = {}

    @pipeline
    def first() -> None:
        holder["ref"] = one()

    with pytest.raises(DefinitionError, match="belongs to pipeline 'first'"):

        @pipeline
        def second() -> None:
            add(holder["ref"])


def test_duplicate_explicit_name_is_an_error() -> None:
    with pytest.raises(DefinitionError, match="duplicate task name 'x'"):

        @pipeline
        def p() -> None:
            one.with_options(name="x")()
            add.with_options(name="x")(1)


def test_calling_a_task_outside_a_pipeline_points_to_fn() -> None:
    with pytest.raises(DefinitionError, match=r"one\.fn"):
        one()
    assert one.fn() == 1


def test_params_from_signature_and_declared_with_types() -> None:
    @pipeline(params={"lr": 0.1})
    def p(n: int = 3, name: str = "x") -> None:
        add(n)

    assert {k: v.type for k, v in p.spec.params.items()} == {"n": int, "name": str, "lr": float}
    from phloem.dsl import resolve_params

    assert resolve_params(p.spec, {"n": "5", "lr": 1}) == {"n": 5, "name": "x", "lr": 1.0}
    with pytest.raises(phloem.ParamError, match="must be int"):
        resolve_params(p.spec, {"n": "five"})
    with pytest.raises(phloem.ParamError, match="no parameter 'm'"):
        resolve_params(p.spec, {"m": 1})


def test_param_default_of_wrong_type_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="parameter 'n' must be int"):

        @pipeline
        def p(n: int = "three") -> None:  # type: ignore[assignment]
            one()


def test_param_without_default_is_refused() -> None:
    with pytest.raises(DefinitionError, match="needs a default"):

        @pipeline
        def p(n) -> None:  # type: ignore[no-untyped-def]
            one()


def test_invalid_cron_is_a_definition_error_with_location() -> None:
    with pytest.raises(DefinitionError) as info:

        @pipeline(schedule="61 * * * *")
        def p() -> None:
            one()

    assert "61 * * * *" in str(info.value) and "test_dsl.py:" in str(info.value)


def test_unknown_pipeline_option() -> None:
    with pytest.raises(DefinitionError, match="did you mean 'schedule'"):
        pipeline(schedul="@daily")


def test_if_on_a_reference_explains_branching() -> None:
    with pytest.raises(DefinitionError, match=r"task\.branch"):

        @pipeline
        def p() -> None:
            if one():
                add(1)


def test_expand_validation() -> None:
    with pytest.raises(DefinitionError, match="needs a list"):

        @pipeline
        def p() -> None:
            add.expand(a=3)

    with pytest.raises(DefinitionError, match="both partial"):

        @pipeline
        def q() -> None:
            add.partial(a=1).expand(a=[1])


def test_empty_pipeline_is_refused() -> None:
    with pytest.raises(DefinitionError, match="defines no tasks"):

        @pipeline
        def p() -> None:
            pass


def test_default_task_options_fill_but_do_not_override() -> None:
    @task(retries=5)
    def stubborn() -> None: ...

    @pipeline(default_task_options={"retries": 2, "retry_delay": 1})
    def p() -> None:
        one()
        stubborn()

    assert p.spec.tasks["one"].options.retries == 2
    assert p.spec.tasks["stubborn"].options.retries == 5
    assert p.spec.tasks["stubborn"].options.retry_delay == 1.0


def test_code_hash_and_source_are_recorded() -> None:
    @pipeline
    def p() -> None:
        one()

    assert len(p.spec.code_hash) == 16
    assert p.spec.source_file and p.spec.source_file.endswith("test_dsl.py")


#: what ``import phloem`` must not pull in: the store, the database drivers, the web stack, the
#: CLI's libraries, the data libraries, and phloem's own layers above the definitions
HEAVY = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "sqlite3",
    "fastapi",
    "starlette",
    "uvicorn",
    "rich",
    "typer",
    "pandas",
    "numpy",
    "pyarrow",
    "fsspec",
    "cryptography",
    "phloem.api",
    "phloem.store",
    "phloem.driver",
    "phloem.executors",
    "phloem.runner",
    "phloem.scheduler",
    "phloem.cli",
)


def test_import_is_light() -> None:
    """Importing phloem records definitions only (how long it takes: benchmarks/imports.py)."""
    import subprocess
    import sys

    code = "import sys, phloem; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "phloem.dsl" in loaded  # the check sees what was imported
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"import phloem loads {heavy}; import them where they are first used"

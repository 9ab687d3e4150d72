"""Options are declared once: validation, hints and the README tables come from that
declaration, and a hint never steers an author to a different feature."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from phloem import DefinitionError, pipeline, sensor, task
from phloem.dsl import docs, foreign
from phloem.dsl.declare import declared
from phloem.dsl.hints import edit_distance, likely_meant
from phloem.dsl.options import PipelineOptions, SensorOptions, TaskOptions

README = Path(__file__).resolve().parents[1] / "README.md"


@task
def one() -> int:
    return 1


def _task_error(**options: Any) -> str:
    with pytest.raises(DefinitionError) as info:
        task(**options)(lambda: None)
    return str(info.value)


def _pipeline_error(**options: Any) -> str:
    with pytest.raises(DefinitionError) as info:
        pipeline(**options)
    return str(info.value)


def test_readme_tables_are_the_declarations() -> None:
    text = README.read_text(encoding="utf-8")
    assert docs.render(text) == text, "run: python -m phloem.dsl.docs --write README.md"
    for scope, cls in (
        ("task", TaskOptions),
        ("sensor", SensorOptions),
        ("pipeline", PipelineOptions),
    ):
        region = text.split(f"<!-- options:{scope} -->")[1].split("<!-- /options")[0]
        assert re.findall(r"^\| `(\w+)` \|", region, re.M) == list(declared(cls))


def test_docs_check_fails_on_a_stale_table(tmp_path: Path) -> None:
    stale = README.read_text(encoding="utf-8").replace("| `retries` |", "| `retrys` |")
    path = tmp_path / "README.md"
    path.write_text(stale, encoding="utf-8")
    assert docs.main(["--check", str(path)]) == 1
    assert docs.main(["--write", str(path)]) == 0
    assert docs.main(["--check", str(path)]) == 0


def test_every_settable_field_is_declared_and_internal_ones_are_not() -> None:
    assert "kind" not in declared(TaskOptions) and "explicit" not in declared(TaskOptions)
    assert {"retries", "timeout", "resources", "teardown"} <= set(declared(TaskOptions))
    assert set(declared(SensorOptions)) == {"poke_interval", "timeout", "mode", "soft_fail"}


def test_pipeline_timeout_does_not_suggest_timezone() -> None:
    message = _pipeline_error(timeozt=2)
    assert "did you mean 'timeout'" in message
    message = _pipeline_error(pool="gpu")
    assert "default_task_options={'pool': ...}" in message


@pytest.mark.parametrize(
    ("scope", "name"),
    [("task", n) for n in foreign.TASK] + [("pipeline", n) for n in foreign.PIPELINE],
)
def test_names_from_other_orchestrators_get_their_own_answer(scope: str, name: str) -> None:
    entry = foreign.TASK[name] if scope == "task" else foreign.PIPELINE[name]
    message = _task_error(**{name: 1}) if scope == "task" else _pipeline_error(**{name: 1})
    assert "did you mean" not in message
    assert entry.origin in message and entry.advice in message
    if entry.same is not None:
        assert f"phloem's '{entry.same}'" in message
        table = TaskOptions if scope == "task" else PipelineOptions
        assert entry.same in declared(table), "the equivalent must be a real option"
    else:
        assert "phloem does not" in message


def test_well_known_foreign_names_say_what_phloem_offers() -> None:
    assert "phloem's 'retry_delay'" in _task_error(retry_delay_seconds=5)
    assert "phloem's 'timeout'" in _task_error(execution_timeout=5)
    message = _task_error(depends_on_past=True)
    assert "phloem does not" in message and "max_active_runs=1" in message


def test_foreign_names_never_shadow_real_options() -> None:
    for name in foreign.TASK:
        assert name not in declared(TaskOptions) and name not in declared(SensorOptions)
    for name in foreign.PIPELINE:
        assert name not in declared(PipelineOptions)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("retires", "retries"),
        ("retry_delays", "retry_delay"),
        ("trigger_rul", "trigger_rule"),
        ("poolslots", "pool_slots"),
        ("maxRetryDelay", "max_retry_delay"),
    ],
)
def test_task_typos_are_still_hinted(typo: str, meant: str) -> None:
    assert f"did you mean '{meant}'" in _task_error(**{typo: 1})


def test_pipeline_typos_are_still_hinted() -> None:
    assert "did you mean 'schedule'" in _pipeline_error(schedul="@daily")
    assert "did you mean 'max_active_runs'" in _pipeline_error(max_active_run=2)


def test_unrelated_names_get_the_list_not_a_guess() -> None:
    message = _task_error(colour="red")
    assert "did you mean" not in message
    known = message.split("known options: ")[1].split(", ")
    assert known == sorted(known) and {"cache", "max_retry_delay", "name"} <= set(known)


def test_options_given_to_the_wrong_decorator_say_where_they_belong() -> None:
    assert "option of @pipeline" in _task_error(schedule="@daily")
    assert "@phloem.sensor" in _task_error(poke_interval=5)
    message = _pipeline_error(trigger_rule="all_done")
    assert "did you mean" not in message
    assert "default_task_options={'trigger_rule': ...}" in message


def test_a_typo_of_an_option_of_another_decorator_says_where_it_belongs() -> None:
    message = _pipeline_error(retry_jiter=0.1)
    assert "did you mean 'retry_jitter'?" in message and "default_task_options" in message
    assert "option of @pipeline" in _task_error(shedule="@daily")
    assert "did you mean 'poke_interval'? 'poke_interval' is an option of sensors" in (
        _task_error(poke_intervall=5)
    )


def test_sensors_take_both_sensor_and_task_options() -> None:
    @sensor(poke_interval=1, timeout=5, retries=2, mode="reschedule")
    def ready() -> bool:
        return True

    assert ready.options.sensor is not None
    assert (ready.options.sensor.timeout, ready.options.sensor.mode) == (5.0, "reschedule")
    assert ready.options.retries == 2
    with pytest.raises(DefinitionError, match="did you mean 'poke_interval'"):
        sensor(poke_intervall=1)(lambda: True)


def test_resources_and_trigger_rules_use_the_same_hints() -> None:
    assert "did you mean 'cpus'" in _task_error(resources={"cpu": 2})
    assert "did you mean 'all_done'" in _task_error(trigger_rule="all_dne")
    assert "did you mean" not in _task_error(trigger_rule="whenever")
    for bad in ("-1GiB", "lots", -5):
        assert "memory" in _task_error(resources={"memory": bad})


def test_default_task_options_are_checked_like_task_options() -> None:
    with pytest.raises(DefinitionError, match="did you mean 'retries'"):
        pipeline(default_task_options={"retires": 1})
    with pytest.raises(DefinitionError, match="cannot set 'name'"):
        pipeline(default_task_options={"name": "x"})
    with pytest.raises(DefinitionError, match="'retries' must be an int >= 0"):
        pipeline(default_task_options={"retries": -1})


def test_pipeline_option_values_are_checked() -> None:
    assert "'catchup' must be True or False" in _pipeline_error(catchup="yes")
    assert "'max_active_tasks' must be an int >= 1" in _pipeline_error(max_active_tasks=0)
    assert "start_date must be a datetime" in _pipeline_error(start_date="yesterday")


def test_a_single_tag_is_one_tag_not_its_letters() -> None:
    @task(tags="nightly")
    def t() -> None: ...

    assert t.options.tags == ("nightly",)


def test_likely_meant_needs_a_close_spelling() -> None:
    assert likely_meant("timeout", ["timezone", "tags"]) is None
    assert likely_meant("retires", ["retries", "retry_delay"]) == "retries"
    assert likely_meant("Max-Active-Runs", ["max_active_runs"]) == "max_active_runs"
    assert likely_meant("id", ["ids", "pool"]) == "ids"
    assert likely_meant("pol", ["pool", "tags"]) is None
    assert edit_distance("retires", "retries") == 1
    assert edit_distance("timeout", "timezone") == 3  # above the 2 edits a 7-letter word may have

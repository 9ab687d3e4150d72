"""Names that would break a log file, a database column, a terminal or ``FILE:PIPELINE`` are
refused when the pipeline is defined, with file, line and what to write instead; and large
pipelines are recorded in definition order."""

from __future__ import annotations

from typing import Any

import pytest

from phloem import DefinitionError, group, pipeline, task
from phloem.dsl.names import check_name


@task
def one() -> int:
    return 1


@task
def total(xs: list[int]) -> int:
    return sum(xs)


BAD_CHARACTERS = [
    "a\x00b",
    "line\nbreak",
    "tab\there",
    "esc\x1b[31m",
    "zero\u200bwidth",
    "rtl\u202e",
]


@pytest.mark.parametrize("name", BAD_CHARACTERS)
def test_control_characters_in_task_names_are_refused_with_location(name: str) -> None:
    with pytest.raises(DefinitionError) as info:
        one.with_options(name=name)
    message = str(info.value)
    assert "test_dsl_names.py:" in message and "control character" in message
    assert "use letters, digits, '_' and '-'" in message


@pytest.mark.parametrize("name", BAD_CHARACTERS)
def test_control_characters_in_group_names_are_refused(name: str) -> None:
    with pytest.raises(DefinitionError, match=r"test_dsl_names\.py:\d+: group name"):

        @pipeline
        def p() -> None:
            with group(name):
                one()


@pytest.mark.parametrize("name", [*BAD_CHARACTERS, "file:pipe", "a/b", "a\\b"])
def test_unsafe_pipeline_names_are_refused(name: str) -> None:
    with pytest.raises(DefinitionError, match=r"test_dsl_names\.py:\d+: .*pipeline name"):
        pipeline(name=name)


@pytest.mark.parametrize(
    ("name", "why"),
    [("a.b", "separates a group"), ("a/b", "path separator"), (" padded", "starts or ends")],
)
def test_separators_and_padding_in_task_names(name: str, why: str) -> None:
    with pytest.raises(DefinitionError, match=why):
        one.with_options(name=name)


def test_ordinary_names_pass() -> None:
    for name in ("train", "train-rf", "étape_2", "load to warehouse", "x" * 250):
        assert check_name(name, "task", "here") == name
    assert check_name("team.nightly", "pipeline", "here") == "team.nightly"


def test_a_function_renamed_to_an_unsafe_name_needs_an_explicit_name() -> None:
    def f() -> None: ...

    f.__name__ = "two\nlines"
    with pytest.raises(DefinitionError, match=r"test_dsl_names\.py:\d+: @task on 'two\\nlines'"):
        task(f)
    assert task(name="fine")(f).options.name == "fine"


def test_too_long_names_and_ids_are_refused() -> None:
    with pytest.raises(DefinitionError, match="the limit is 250"):
        one.with_options(name="x" * 251)
    with pytest.raises(DefinitionError, match="use shorter group or task names"):

        @pipeline
        def p() -> None:
            with group("g" * 200):
                one.with_options(name="t" * 60)()


def test_names_that_are_not_text_are_refused() -> None:
    bad: Any = 3
    with pytest.raises(DefinitionError, match="non-empty string"):
        one.with_options(name=bad)


def test_a_large_fan_in_keeps_definition_order() -> None:
    @pipeline
    def fan() -> None:
        first = [one() for _ in range(300)]
        sink = total(first[::-1])  # passed in reverse, recorded in definition order
        for ref in first[:5]:
            ref >> sink  # already a data edge: not added twice

    spec = fan.spec
    ids = ["one", *(f"one__{i}" for i in range(1, 300))]
    assert list(spec.tasks)[:300] == ids
    assert spec.tasks["total"].upstream == tuple(ids)
    assert spec.tasks["total"].data_upstream == tuple(ids)


def test_repeated_calls_skip_suffixes_taken_by_explicit_names() -> None:
    @pipeline
    def p() -> None:
        one()
        one.with_options(name="one__2")()
        one()
        one()
        one()

    assert list(p.spec.tasks) == ["one", "one__2", "one__1", "one__3", "one__4"]

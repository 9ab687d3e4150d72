"""Run parameters typed by their annotations: checked and coerced from Python and --param,
stored as JSON, handed to tasks as the declared types."""

from __future__ import annotations

import enum
import json
import textwrap
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

import phloem
from phloem import pipeline, task
from phloem.cli.main import app
from phloem.dsl import resolve_params, typed_params
from phloem.states import RunState


class Mode(enum.Enum):
    FAST = "fast"
    FULL = "full"


class Opaque:
    """Neither JSON nor a type pydantic knows."""


class TrainConfig(BaseModel):
    learning_rate: float = 0.1
    layers: list[int] = [64, 32]
    model: str = "mlp"


@task
def describe(
    cutoff: datetime,
    day: date,
    window: timedelta,
    out: Path,
    mode: Mode,
    split: str,
    days: list[date],
    weights: dict[str, float],
    config: TrainConfig,
) -> dict[str, Any]:
    assert cutoff.tzinfo is not None or cutoff == datetime(2024, 1, 1)
    return {
        "cutoff": type(cutoff).__name__ + ":" + cutoff.date().isoformat(),
        "day": type(day).__name__ + ":" + day.isoformat(),
        "window_hours": window.total_seconds() / 3600,
        "out": type(out).__name__ + ":" + out.name,
        "mode": mode.name,
        "split": split,
        "days": [type(d).__name__ for d in days],
        "weights": weights,
        "config": [type(config).__name__, config.learning_rate, config.layers],
    }


@pipeline
def typed(
    cutoff: datetime = datetime(2024, 1, 1),
    day: date = date(2024, 1, 2),
    window: timedelta = timedelta(hours=6),
    out: Path = Path("/tmp/out.parquet"),
    mode: Mode = Mode.FAST,
    split: Literal["train", "test"] = "train",
    days: list[date] = [],  # noqa: B006
    weights: dict[str, float] = {"a": 1.0},  # noqa: B006
    config: TrainConfig = TrainConfig(),
) -> None:
    describe(cutoff, day, window, out, mode, split, days, weights, config)


def test_defaults_arrive_as_their_types(home: Path) -> None:
    r = phloem.run(typed, executor="inline")
    assert r.state is RunState.SUCCESS, {k: ti.error for k, ti in r.tasks.items()}
    assert r.output("describe") == {
        "cutoff": "datetime:2024-01-01",
        "day": "date:2024-01-02",
        "window_hours": 6.0,
        "out": "PosixPath:out.parquet",
        "mode": "FAST",
        "split": "train",
        "days": [],
        "weights": {"a": 1.0},
        "config": ["TrainConfig", 0.1, [64, 32]],
    }


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_text_overrides_are_parsed_as_from_the_command_line(home: Path, executor: str) -> None:
    r = phloem.run(
        typed,
        executor=executor,
        params={
            "cutoff": "2025-06-30T12:00:00+02:00",
            "day": "2025-07-01",
            "window": "PT30M",
            "out": "/data/x.csv",
            "mode": "full",
            "split": "test",
            "days": '["2025-01-01", "2025-01-02"]',
            "weights": '{"b": 2}',
            "config": '{"learning_rate": 0.01}',
        },
    )
    assert r.state is RunState.SUCCESS, {k: ti.error for k, ti in r.tasks.items()}
    out = r.output("describe")
    assert out["cutoff"] == "datetime:2025-06-30"
    assert out["window_hours"] == 0.5
    assert out["mode"] == "FULL"
    assert out["days"] == ["date", "date"]
    assert out["weights"] == {"b": 2.0}
    assert out["config"] == ["TrainConfig", 0.01, [64, 32]]


def test_the_store_keeps_json_and_tasks_get_types() -> None:
    spec = typed.spec
    stored = resolve_params(
        spec, {"cutoff": datetime(2025, 1, 1, tzinfo=timezone.utc), "mode": Mode.FULL}
    )
    assert json.loads(json.dumps(stored)) == stored  # plain JSON
    assert stored["cutoff"] == "2025-01-01T00:00:00Z"
    assert stored["mode"] == "full"
    assert stored["config"] == {"learning_rate": 0.1, "layers": [64, 32], "model": "mlp"}
    back = typed_params(spec, stored)
    assert back["cutoff"] == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert back["mode"] is Mode.FULL
    assert isinstance(back["config"], TrainConfig)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("cutoff", "yesterday", "parameter 'cutoff' must be datetime"),
        ("mode", "slow", "parameter 'mode' must be Mode"),
        ("split", "validate", "parameter 'split' must be Literal"),
        ("days", '["2025-13-01"]', "parameter 'days' must be list[datetime.date]"),
        ("config", '{"learning_rate": "high"}', "learning_rate"),
    ],
)
def test_wrong_values_name_the_parameter_and_its_type(name: str, value: str, expected: str) -> None:
    with pytest.raises(phloem.ParamError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        resolve_params(typed.spec, {name: value})


def test_a_default_of_the_wrong_type_is_a_definition_error() -> None:
    with pytest.raises(phloem.DefinitionError, match="default of parameter 'when' must be date"):

        @pipeline
        def bad(when: date = "someday") -> None:  # type: ignore[assignment]
            describe.fn  # noqa: B018

    with pytest.raises(phloem.DefinitionError, match="parameter 'thing' has a type phloem cannot"):

        @pipeline
        def opaque(thing: Opaque | None = None) -> None:
            pass


def test_cli_params_are_typed_and_bad_ones_are_one_error_line(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "daily.py"
    path.write_text(
        textwrap.dedent(
            """
            from datetime import date, timedelta
            from phloem import pipeline, task

            @task
            def before(day: date, back: timedelta) -> str:
                return (day - back).isoformat()

            @pipeline
            def daily(day: date = date(2024, 1, 1), back: timedelta = timedelta(days=1)):
                before(day, back)
            """
        )
    )
    runner = CliRunner()
    args = ["run", str(path), "-p", "day=2025-03-01", "-p", "back=P7D", "--executor", "inline"]
    ok = runner.invoke(app, [*args, "--json"])
    assert ok.exit_code == 0, ok.output
    record = json.loads(ok.stdout)
    assert record["params"] == {"day": "2025-03-01", "back": "P7D"}
    bad = runner.invoke(app, ["run", str(path), "-p", "day=March", "--executor", "inline"])
    assert bad.exit_code == 2
    assert "parameter 'day' must be date" in bad.output
    assert "Traceback" not in bad.output

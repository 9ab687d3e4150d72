"""Dates in the task context, placeholders in shell, SQL and template arguments, SQL scripts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

import phloem
from phloem import pipeline, task
from phloem.context import TaskContext
from phloem.secrets import KEY_ENV
from phloem.states import RunState
from phloem.tasks import shell, sql
from phloem.tasks.sql import run_query, split_statements
from phloem.templating import render, template
from phloem.variables import close_stores, settings_store

DAY = datetime(2026, 3, 29, 2, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    yield
    close_stores()


def ctx(**params: object) -> TaskContext:
    return TaskContext(
        run_id="r-1",
        pipeline="p",
        task_id="t",
        map_index=None,
        try_number=2,
        logical_date=DAY,
        data_interval_start=DAY - timedelta(days=1),
        data_interval_end=DAY,
        params=dict(params),
        log=logging.getLogger("test"),
    )


# -- the context -----------------------------------------------------------------------------


@task
def dates() -> dict:
    c = phloem.context()
    assert c.logical_date.tzinfo is not None
    assert c.data_interval_start is not None and c.data_interval_end is not None
    return {
        "day": c.logical_date.date().isoformat(),
        "fmt": c.logical_date.strftime("%Y/%m/%d"),
        "week_before": (c.logical_date - timedelta(days=7)).date().isoformat(),
        "ordered": c.data_interval_start <= c.data_interval_end,
        "ds": c.ds,
        "ds_nodash": c.ds_nodash,
    }


@pipeline(schedule="@daily", start_date="2026-01-01")
def dated() -> None:
    dates()


def test_context_dates_are_aware_datetimes(home: Path) -> None:
    r = phloem.run(dated, logical_date="2026-03-29", executor="inline")
    assert r.state is RunState.SUCCESS, r.states()
    assert r.output("dates") == {
        "day": "2026-03-29",
        "fmt": "2026/03/29",
        "week_before": "2026-03-22",
        "ordered": True,
        "ds": "2026-03-29",
        "ds_nodash": "20260329",
    }


# -- rendering -------------------------------------------------------------------------------


def test_known_placeholders_are_filled() -> None:
    c = ctx(n=3, cfg={"region": "eu", "days": [1, 2]})
    assert render("d={ds} n={ds_nodash} r={run_id} t={try_number}", c) == (
        "d=2026-03-29 n=20260329 r=r-1 t=2"
    )
    assert render("{{ ds }}/{{ds_nodash}}", c) == "2026-03-29/20260329"
    assert render("{logical_date}", c) == DAY.isoformat()
    assert render("{data_interval_start}", c) == (DAY - timedelta(days=1)).isoformat()
    assert render("{params.n} {params.cfg.region} {params.cfg.days}", c) == "3 eu [1, 2]"


def test_other_braces_pass_through() -> None:
    c = ctx()
    for text in (
        "awk '{print $1}' f",
        "echo '{\"a\": 1}'",
        "echo ${ds} ${HOME}",
        "{unknown} {ds_}",
        "no braces at all",
    ):
        assert render(text, c) == text


def test_outside_a_task_text_without_placeholders_is_untouched() -> None:
    assert render("awk '{print $1}'") == "awk '{print $1}'"
    with pytest.raises(phloem.PhloemError, match="only available while a task runs"):
        render("{ds}")


def test_an_unknown_parameter_is_a_clear_error() -> None:
    with pytest.raises(phloem.PhloemError, match=r"no parameter 'nope' \(its parameters: n\)"):
        render("{params.nope}", ctx(n=1))


def test_connection_fields_and_bad_field(home: Path) -> None:
    settings_store().add_connection("db", "postgresql://ana:s3cret@db.example:5433/dw")
    c = ctx()
    assert render("{conn.db.host}:{conn.db.port} {conn.db.login}", c) == "db.example:5433 ana"
    with pytest.raises(phloem.PhloemError, match="has no field 'hots'"):
        render("{conn.db.hots}", c)


def test_variables(home: Path) -> None:
    settings_store().set_variable("bucket", "s3://lake")
    assert render("{var.bucket}/raw", ctx()) == "s3://lake/raw"


# -- in tasks --------------------------------------------------------------------------------


@task
def read(path: str) -> str:
    return path


@pipeline(params={"region": "eu"})
def templated(region: str = "eu") -> None:
    shell("echo {ds} {params.region} {run_id}", name="say")
    shell(["echo", "{{ ds_nodash }}"], name="argv")
    shell("echo $DAY", env={"DAY": "{ds}"}, name="env")
    shell("awk 'BEGIN {print 7}'", name="awk")
    read(template("raw/{params.region}/{ds}.csv"))
    read.with_options(name="plain")("raw/{ds}.csv")


@pytest.mark.parametrize("executor", ["inline", "local"])
def test_shell_commands_and_template_arguments_are_filled(home: Path, executor: str) -> None:
    r = phloem.run(templated, logical_date="2026-03-29", params={"region": "us"}, executor=executor)
    assert r.state is RunState.SUCCESS, {k: ti.error for k, ti in r.tasks.items()}
    assert r.output("say") == f"2026-03-29 us {r.run_id}"
    assert r.output("argv") == "20260329"
    assert r.output("env") == "2026-03-29"
    assert r.output("awk") == "7"
    assert r.output("read") == "raw/us/2026-03-29.csv"
    assert r.output("plain") == "raw/{ds}.csv"  # only marked arguments are templated


def test_a_connection_password_in_a_command_is_masked(home: Path) -> None:
    settings_store().add_connection("db", "postgresql://ana:pw-9c1e@db:5432/dw")

    @pipeline
    def leaky() -> None:
        shell("echo {conn.db.password}", name="leak")

    r = phloem.run(leaky, executor="inline")
    assert r.state is RunState.SUCCESS
    log = (home / "logs" / r.run_id / "leak.1.log").read_text()
    assert "pw-9c1e" not in log and "***" in log


# -- SQL scripts -----------------------------------------------------------------------------


def test_split_statements_respects_strings_and_comments() -> None:
    script = """
        -- refresh one day; a ; in a comment
        DELETE FROM t WHERE d = ':x;y';
        INSERT INTO t VALUES (1, 'a;b');;
        /* trailing */
    """
    assert split_statements(script) == [
        "-- refresh one day; a ; in a comment\n        DELETE FROM t WHERE d = ':x;y'",
        "INSERT INTO t VALUES (1, 'a;b')",
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path, home: Path) -> str:
    url = (
        f"sqlite:///{tmp_path / 'w.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    settings_store().add_connection("w", url)
    run_query("CREATE TABLE sales (ds VARCHAR(10), amount INTEGER)", conn="w")
    return url


REFRESH = """
    DELETE FROM sales WHERE ds = '{ds}';
    INSERT INTO sales (ds, amount) VALUES ('{ds}', :amount);
    SELECT ds, amount FROM sales ORDER BY ds
"""


@pipeline
def refresh(amount: int = 5) -> None:
    sql(REFRESH, conn="w", params={"amount": amount}, name="refresh")


@pipeline
def refresh_again(amount: int = 5) -> None:
    sql(REFRESH, conn="w", params={"amount": amount}, name="refresh")


def test_a_script_is_idempotent_delete_then_insert(warehouse: str) -> None:
    for p, amount in ((refresh, 5), (refresh_again, 7)):  # one day twice: replaced, not added
        r = phloem.run(p, logical_date="2026-03-29", params={"amount": amount})
        assert r.state is RunState.SUCCESS, {k: ti.error for k, ti in r.tasks.items()}
    assert r.output("refresh") == [{"ds": "2026-03-29", "amount": 7}]


def test_a_failing_script_changes_nothing(warehouse: str) -> None:
    run_query("INSERT INTO sales VALUES ('2026-01-01', 1)", conn="w")
    with pytest.raises(Exception, match="no_such_table"):
        run_query("DELETE FROM sales; INSERT INTO no_such_table VALUES (1)", conn="w")
    assert run_query("SELECT count(*) AS n FROM sales", conn="w") == [{"n": 1}]


def test_a_script_refuses_a_list_of_params(warehouse: str) -> None:
    with pytest.raises(phloem.PhloemError, match="takes one dict of params"):
        run_query("DELETE FROM sales; SELECT 1", conn="w", params=[{"a": 1}, {"a": 2}])

"""``phloem alerts``: rules kept in the store for any pipeline, applied where runs are
driven, and the history of what was sent."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.app import Phloem
from phloem.cli.main import app
from receivers import http_receiver, wait_for

runner = CliRunner()


def cli(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--on", "failure"], "say where alerts go"),
        (["--on", "fail", "--email", "a@b.org"], "unknown kind of alert rule 'fail'"),
        (["--on", "failure", "--factor", "2", "--email", "a@b.org"], "does not take factor"),
        (["--on", "deadline", "--email", "a@b.org"], "needs --after"),
        (["--on", "deadline", "--after", "soon", "--email", "a@b.org"], "write a duration"),
        (["--on", "metric", "--below", "1", "--email", "a@b.org"], "needs the metric's name"),
        (["--on", "duration", "--factor", "-1", "--email", "a@b.org"], "factor must be"),
        (["--on", "failure", "--webhook", "hooks.example.org"], "must start with http"),
        (["--on", "failure", "--email", "nobody"], "not an e-mail address"),
        (["--on", "success", "--message", "{secret}", "--email", "a@b.org"], "is unknown"),
    ],
)
def test_bad_rules_are_refused_and_nothing_is_stored(
    home: Path, args: list[str], says: str
) -> None:
    result = cli("alerts", "add", "train", *args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "no alert rules" in cli("alerts", "list").output


def test_add_list_remove(home: Path) -> None:
    hook = "https://hooks.slack.com/services/T000/B000/s3cretT0ken"
    out = cli("alerts", "add", "train", "--on", "duration", "--factor", "2", "--last", "5",
              "--webhook", hook, "--email", "ml@x.org")  # fmt: skip
    assert out.exit_code == 0 and "alert rule 1 added" in out.output
    out = cli("alerts", "add", "train", "--on", "deadline", "--after", "3h", "--email", "a@b.org")
    assert "alert rule 2 added: train: run not succeeded 3h after its logical date" in out.output
    listing = cli("alerts", "list").output
    assert "run longer than 2 x the median of its last 5 successful runs" in listing
    assert "s3cretT0ken" not in listing  # a webhook's path is a secret: only its host shows
    rules = json.loads(cli("alerts", "list", "--json", "--pipeline", "train").output)
    assert [r["id"] for r in rules] == [1, 2] and rules[1]["options"] == {"after": 10800.0}
    assert cli("alerts", "remove", "1").exit_code == 0
    missing = cli("alerts", "remove", "1")
    assert missing.exit_code == 2 and "no alert rule 1" in missing.output
    assert [r["id"] for r in json.loads(cli("alerts", "list", "--json").output)] == [2]


def test_a_rule_added_from_the_command_line_fires_for_phloem_run(
    home: Path, tmp_path: Path
) -> None:
    file = tmp_path / "p.py"
    file.write_text(
        textwrap.dedent(
            """
            from phloem import pipeline, task

            @task
            def broken():
                raise RuntimeError("disk full")

            @pipeline
            def nightly():
                broken()
            """
        )
    )
    with http_receiver() as hook:
        added = cli("alerts", "add", "nightly", "--on", "failure", "--webhook", hook.url)
        assert added.exit_code == 0
        out = cli("run", file, "--executor", "inline")
        assert out.exit_code == 1
        wait_for(lambda: hook.bodies, what="the alert")
        body = hook.bodies[0]
        assert body["pipeline"] == "nightly" and body["rule_id"] == "cli-1"
        assert "broken: RuntimeError: disk full" in body["text"]
        # the receiver has the alert before the sender records it as sent
        history = wait_for(
            lambda: (h := cli("alerts", "history", "--pipeline", "nightly"))
            and "sent after 1 try" in h.output
            and h,
            what="the alert recorded as sent",
        )
        assert "run failed  -> webhook http://127.0.0.1" in history.output
        rows = json.loads(cli("alerts", "history", "--json", "--run", body["run_id"]).output)
        assert len(rows) == 1 and rows[0]["state"] == "sent"
    with Phloem.open() as ph:
        assert ph.store.alerts.history()[0].run_id == body["run_id"]

"""Each command builds one application and closes it when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from phloem.app import Phloem
from phloem.cli.main import app


def test_one_application_per_command_closed_at_its_end(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Phloem] = []
    closed: list[Phloem] = []
    init, close = Phloem.__init__, Phloem.close

    def counting_init(self: Phloem, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    def counting_close(self: Phloem) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(Phloem, "__init__", counting_init)
    monkeypatch.setattr(Phloem, "close", counting_close)
    runner = CliRunner()
    for args in (["runs", "list"], ["pools", "set", "gpu", "2"], ["runs", "show", "nope"]):
        made.clear()
        closed.clear()
        runner.invoke(app, args)
        assert len(made) == 1, args
        assert closed == made, args

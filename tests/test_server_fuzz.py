"""A fuzz pass over the OpenAPI document (schemathesis): requests made from the schema, valid
and not, as an admin, never get a 5xx, and every error is a problem document.

Bounded so the suite stays fast: ``BUDGET`` examples shared among the operations."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from server_fixtures import Api, make_api  # noqa: E402

#: examples in all, shared among the operations (at least 4 each)
BUDGET = 300

PIPELINE = """
from phloem import pipeline, task

@task
def one(n: int) -> int:
    return n

@pipeline
def fuzzed(n: int = 1, name: str = "x"):
    one(n)
"""


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from phloem.scheduler.lookup import read_folder

    home = Path(tmp_path_factory.mktemp("fuzz"))
    a = make_api("memory", home / "home")
    folder = home / "pipelines"
    folder.mkdir()
    (folder / "fuzzed.py").write_text(textwrap.dedent(PIPELINE))
    read_folder(a.ph, folder)
    a.app.state.stopping.set()  # event streams answer and end instead of following the store
    yield a
    a.ph.close()


def test_no_request_gets_a_server_error(fuzz_api: Api) -> None:
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_api.app)
    headers = fuzz_api.headers("admin")
    operations = [found.ok() for found in schema.get_all_operations()]
    each = max(4, BUDGET // len(operations))
    seen = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=each,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, (
                f"{where} -> {response.status_code}: {response.text[:500]}"
            )
            if response.status_code >= 400:
                assert response.headers.get("content-type") == ["application/problem+json"], (
                    f"{where} -> {response.status_code} without a problem document: "
                    f"{response.text[:200]}"
                )

        check()
        seen += 1
    assert seen >= 8

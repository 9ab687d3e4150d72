"""Dynamic mapping at scale: 10,000 instances in one run, fan-in included."""

from __future__ import annotations

from pathlib import Path

import phloem
from phloem import pipeline, task


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def double(x: int) -> int:
    return 2 * x


@task
def plus_one(x: int) -> int:
    return x + 1


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@pipeline
def wide(n: int = 10_000) -> None:
    total(double.expand(x=numbers(n)))


@pipeline
def mapped_of_mapped(n: int = 2_000) -> None:
    total(plus_one.expand(x=double.expand(x=numbers(n))))


def test_ten_thousand_mapped_instances_and_a_fan_in(tmp_path: Path) -> None:
    """How long it takes is measured by benchmarks/run.py (W1), not asserted here."""
    r = phloem.run(wide, store=f"sqlite:///{tmp_path / 'db.sqlite'}", home=tmp_path)
    assert r.succeeded
    assert r.output("total") == 2 * sum(range(10_000))
    assert len(r.output("double")) == 10_000


def test_mapping_over_a_mapped_task(tmp_path: Path) -> None:
    r = phloem.run(mapped_of_mapped, store="memory", home=tmp_path)
    assert r.succeeded
    assert r.output("total") == sum(2 * x + 1 for x in range(2_000))


@task
def big_chunks() -> list[str]:
    return [f"chunk-{i}-" + "x" * 40_000 for i in range(3)]  # > 64 KiB: stored as an artifact


@task
def chunk_id(chunk: str) -> str:
    return chunk.split("-")[1]


@pipeline
def over_an_artifact() -> None:
    chunk_id.expand(chunk=big_chunks())


def test_mapping_over_a_large_output_decodes_it_in_the_workers(tmp_path: Path) -> None:
    from phloem.artifacts.codec import from_stored_json
    from phloem.artifacts.ref import ArtifactRef

    r = phloem.run(over_an_artifact, store="memory", home=tmp_path)
    assert r.succeeded
    assert isinstance(from_stored_json(r.tasks[("big_chunks", -1)].output), ArtifactRef)
    assert r.output("chunk_id") == ["0", "1", "2"]
    inputs = {u.task_id for u in r.app.store.artifact_uses(r.run_id) if u.role == "input"}
    assert inputs == {"chunk_id"}  # each instance recorded reading the source artifact

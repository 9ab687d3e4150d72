"""Artifacts on a real S3-compatible server (SeaweedFS started by the tests): content-addressed,
checksum-verified, large objects in parts, credentials from the environment or a connection,
and an object store that goes away mid-run fails attempts clearly until it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import phloem
from phloem import pipeline, task
from phloem.app import Phloem
from phloem.artifacts import ArtifactStore
from phloem.artifacts.store import PART_SIZE
from phloem.config import Settings
from phloem.errors import ArtifactError
from phloem.states import RunState, TaskState
from processes import Processes
from s3server import S3Server


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    procs = Processes()
    server = S3Server(procs, tmp_path_factory.mktemp("s3"))
    try:
        server.start()
        server.make_bucket("phloem")
        yield server
    finally:
        procs.close()


@pytest.fixture
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = s3.env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def _fs(s3: S3Server):  # type: ignore[no-untyped-def]
    import s3fs

    return s3fs.S3FileSystem(key="k", secret="s", client_kwargs={"endpoint_url": s3.endpoint})


def test_round_trip_is_content_addressed_and_verified(
    s3: S3Server, aws_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    root = f"s3://phloem/{request.node.name}"
    store = ArtifactStore(root)
    value = np.arange(1000, dtype=np.float64)
    ref = store.put(value)
    assert store.put(np.arange(1000, dtype=np.float64)) == ref  # same bytes, same object
    assert store.exists(ref)
    assert store.location(ref) == f"{root}/{ref.key}"
    fresh = ArtifactStore(root)  # no cached bytes
    assert np.array_equal(fresh.get(ref), value)  # type: ignore[arg-type]

    # the object changed behind phloem's back: refused, never unpickled
    fs = _fs(s3)
    fs.pipe_file(f"phloem/{request.node.name}/{ref.key}", b"tampered" * 1000)
    with pytest.raises(ArtifactError, match="corrupt or was modified"):
        ArtifactStore(root).get(ref)
    # and moved aside, so the producer's next put writes a good copy again
    assert store.put(value) == ref and np.array_equal(ArtifactStore(root).get(ref), value)  # type: ignore[arg-type]


def test_missing_object_names_where_it_looked(aws_env: dict[str, str]) -> None:
    store = ArtifactStore("s3://phloem/missing-test")
    ref = store.put({"a": list(range(5000))})
    _fs_rm = store._fs_path(ref)  # the file system phloem uses
    _fs_rm[0].rm_file(_fs_rm[1])
    with pytest.raises(ArtifactError, match=r"is missing at s3://phloem/missing-test/sha256/"):
        ArtifactStore("s3://phloem/missing-test").get(ref)


def test_large_objects_go_up_in_parts(s3: S3Server, aws_env: dict[str, str]) -> None:
    store = ArtifactStore("s3://phloem/large")
    data = np.random.default_rng(0).bytes(2 * PART_SIZE + 1024)
    ref = store.put_bytes(data, "pickle", "bytes")
    info = _fs(s3).info(f"phloem/large/{ref.key}")
    assert info["size"] == len(data)
    # a multipart upload's ETag is "<md5 of the parts' md5s>-<number of parts>"
    assert str(info["ETag"]).strip('"').endswith("-3")
    assert ArtifactStore("s3://phloem/large").read_bytes(ref) == data


def test_credentials_and_endpoint_from_a_connection(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    env = {
        "PHLOEM_HOME": str(tmp_path),
        "PHLOEM_ARTIFACTS_URL": "s3://phloem/by-connection",
        "PHLOEM_ARTIFACTS_CONNECTION": "objects",
    }
    app = Phloem(Settings.from_env(environ=env))
    try:
        app.variables.add_connection(
            "objects", f"s3://ml-user:top-secret@127.0.0.1:{s3.s3}?secure=false"
        )
        options = app.artifacts.options
        assert options["client_kwargs"]["endpoint_url"] == s3.endpoint
        assert options["key"] == "ml-user" and options["secret"] == "top-secret"
        ref = app.artifacts.put(list(range(10_000)))
        # without the connection's endpoint this would have gone to AWS and failed
        assert _fs(s3).exists(f"phloem/by-connection/{ref.key}")
    finally:
        app.close()


def test_a_connection_of_another_kind_is_refused(tmp_path: Path) -> None:
    env = {
        "PHLOEM_HOME": str(tmp_path),
        "PHLOEM_ARTIFACTS_URL": "s3://phloem/x",
        "PHLOEM_ARTIFACTS_CONNECTION": "db",
    }
    app = Phloem(Settings.from_env(environ=env))
    try:
        app.variables.add_connection("db", "postgresql://u:p@h/db")
        with pytest.raises(phloem.PhloemError, match="the artifact store takes an S3 connection"):
            _ = app.artifacts
    finally:
        app.close()


# -- a whole pipeline with its artifacts on S3 --------------------------------------------------


@task
def make(n: int) -> list[int]:
    return list(range(n))


@task
def features(xs: list[int]) -> np.ndarray:
    return np.outer(np.asarray(xs, dtype=np.float64), np.ones(64))


@task
def total(m: np.ndarray) -> float:
    return float(m.sum())


@pipeline
def on_s3(n: int = 500) -> None:
    total(features(make(n)))


def test_pipeline_on_local_workers_keeps_its_artifacts_on_s3(
    s3: S3Server, aws_env: dict[str, str], tmp_path: Path
) -> None:
    env = {"PHLOEM_HOME": str(tmp_path), "PHLOEM_ARTIFACTS_URL": "s3://phloem/pipeline"}
    app = Phloem(Settings.from_env(environ=env))
    try:
        r = phloem.run(on_s3, executor="local", app=app)
        assert r.state is RunState.SUCCESS
        assert r.output("total") == pytest.approx(sum(range(500)) * 64)
        digests = {u.digest for u in app.store.artifact_uses(r.run_id)}
        assert digests, "the array should be an artifact"
        keys = _fs(s3).find("phloem/pipeline")
        assert all(any(d in k for k in keys) for d in digests)
        assert not (tmp_path / "artifacts").exists()  # nothing went to the local disk
    finally:
        app.close()


# -- the object store goes away mid-run -----------------------------------------------------------


@task(retries=8, retry_delay=0.5, retry_backoff=2.0, max_retry_delay=3)
def produce(gate: str) -> np.ndarray:
    marker = Path(gate)
    marker.with_suffix(".started").write_text("x")
    while not marker.exists():
        time.sleep(0.05)
    return np.ones((300, 300))


@task
def consume(m: np.ndarray) -> float:
    return float(m.sum())


@pipeline
def outage(gate: str = "") -> None:
    consume(produce(gate))


def test_object_store_down_mid_run_fails_attempts_clearly_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    procs = Processes()
    server = S3Server(procs, tmp_path / "s3")
    try:
        server.start()
        server.make_bucket("phloem")
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        env = {"PHLOEM_HOME": str(tmp_path / "home"), "PHLOEM_ARTIFACTS_URL": "s3://phloem/o"}
        app = Phloem(Settings.from_env(environ=env))
        gate = tmp_path / "gate"
        done: dict[str, object] = {}

        def drive() -> None:
            done["result"] = phloem.run(
                outage, params={"gate": str(gate)}, executor="local", app=app
            )

        runner = threading.Thread(target=drive)
        runner.start()
        try:
            _wait_for(lambda: gate.with_suffix(".started").exists(), "the task to start")
            server.kill()
            gate.write_text("go")  # the task now stores its output: the server is away
            _wait_for(lambda: _failed_attempts(app) > 0, "an attempt to fail")
            server.start()
        finally:
            runner.join(timeout=180)
        assert not runner.is_alive()
        result = done["result"]
        assert isinstance(result, phloem.RunResult)
        assert result.state is RunState.SUCCESS
        assert result.task_state("consume") is TaskState.SUCCESS
        errors = [a.error or "" for a in app.store.attempts(result.run_id, "produce") if a.error]
        assert errors and all("cannot write artifact to s3://phloem/o/sha256/" in e for e in errors)
        assert "object store is reachable" in errors[0]
        app.close()
    finally:
        procs.close()


def _failed_attempts(app: Phloem) -> int:
    runs = app.store.list_runs("outage", limit=1)
    if not runs:
        return 0
    return sum(1 for a in app.store.attempts(runs[0].run_id, "produce") if a.error)


def _wait_for(check, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)

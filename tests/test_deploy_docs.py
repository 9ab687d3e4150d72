"""docs/deploy.md and its manifests (docs/deploy/): the tests apply them to no cluster, so
they are checked on paper. Core objects against the Kubernetes JSON schemas kubernetes-validate
bundles (strict: an unknown field is an error); the RayCluster against a schema of its CRD's
fields written for these tests (no registry ships one), whose pod templates use the same
Kubernetes schemas; the Prometheus job with promtool. Every ``PHLOEM_*`` variable and every
``phloem`` command and flag that the doc, the manifests or the Dockerfile name must exist, so
the doc cannot drift from the code."""

from __future__ import annotations

import enum
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "docs" / "deploy"
DOC = ROOT / "docs" / "deploy.md"
DOCKERFILE = DEPLOY / "Dockerfile"
RAY_SCHEMA = Path(__file__).parent / "fixtures" / "raycluster-v1.schema.json"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
#: the oldest and the newest Kubernetes whose schemas kubernetes-validate bundles
K8S_VERSIONS = (
    "1.25",
    kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version()),
)
K8S_DEFS = "https://kubernetes.io/api/_definitions.json"


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc)
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return found


def core_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, doc in documents() if doc["apiVersion"] != "ray.io/v1"]


def test_there_are_manifests_and_every_document_parses() -> None:
    assert {p.name for p in MANIFESTS} >= {"00-namespace.yaml", "50-raycluster.yaml"}
    kinds = set()
    for path in MANIFESTS:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path.name} holds no document"
        for doc in docs:
            assert isinstance(doc, dict), f"{path.name}: a document that is not a mapping"
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path.name
            assert doc["kind"] == "Namespace" or doc["metadata"].get("namespace") == "phloem"
            kinds.add(doc["kind"])
    assert kinds >= {
        "Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Job", "Deployment",
        "Service", "PodDisruptionBudget", "RayCluster",
    }  # fmt: skip


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("name", "doc"), core_documents(), ids=[n for n, _ in core_documents()])
def test_core_objects_validate_against_the_kubernetes_schemas(
    name: str, doc: dict[str, Any], version: str
) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_kubernetes_schemas_catch_a_misspelt_field() -> None:
    """The check above has teeth: strict schemas refuse what Kubernetes would ignore."""
    bad = json.loads(json.dumps(one("Deployment", "phloem-server")))
    bad["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRefs"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


@cache
def ray_validator() -> jsonschema.Draft202012Validator:
    defs = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{K8S_VERSIONS[-1]}.0-local-strict/_definitions.json",
        K8S_VERSIONS[-1],
    )
    assert defs["$id"] == K8S_DEFS
    registry: Registry = Resource.from_contents(defs) @ Registry()
    schema = json.loads(RAY_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def ray_errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in ray_validator().iter_errors(doc)
    ]


def test_the_raycluster_validates_against_its_schema() -> None:
    (cluster,) = of_kind("RayCluster")
    assert ray_errors(cluster) == []


@pytest.mark.parametrize(
    "spoil",
    [
        lambda c: c["spec"].update(workerGroupSpec=c["spec"].pop("workerGroupSpecs")),
        lambda c: c["spec"]["workerGroupSpecs"][0].pop("groupName"),
        lambda c: c["spec"]["workerGroupSpecs"][0].update(maxReplicas="20"),
        lambda c: c["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
        lambda c: c["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
            envFrom=[{"configMapRef": {"nam": "phloem-config"}}]
        ),
    ],
    ids=["typo", "no-group-name", "replicas-as-text", "start-param-not-text", "pod-typo"],
)
def test_the_raycluster_schema_catches_mistakes(spoil: Any) -> None:
    (cluster,) = of_kind("RayCluster")
    bad = json.loads(json.dumps(cluster))
    spoil(bad)
    assert ray_errors(bad)


def ray_resources(group: dict[str, Any]) -> dict[str, float]:
    """The custom resources a group's pods declare to Ray (``rayStartParams.resources`` is a
    JSON object quoted once more for the shell)."""
    raw = group.get("rayStartParams", {}).get("resources")
    if raw is None:
        return {}
    inner = json.loads(raw)
    value = json.loads(inner)
    assert isinstance(value, dict)
    return value


def test_the_raycluster_is_what_the_doc_says() -> None:
    (cluster,) = of_kind("RayCluster")
    spec = cluster["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no attempts on the head
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for g in groups.values():
        assert g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"], g["groupName"]
        # phloem refuses a task no node it has seen could hold: every shape must have a node
        assert g["minReplicas"] >= 1, g["groupName"]
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == "1"
    assert ray_resources(groups["big-disk"]) == {"big_disk": 1}
    # the schedulers reach the head's Ray Client port through the Service KubeRay makes
    address = one("ConfigMap", "phloem-config")["data"]["PHLOEM_RAY_ADDRESS"]
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    ports = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    client = next(p["containerPort"] for p in ports if p["name"] == "client")
    assert address == f"ray://{name}-head-svc.{ns}.svc.cluster.local:{client}"
    # one image everywhere, with the Ray of the cluster
    images = {c["image"] for c in containers()}
    assert len(images) == 1
    assert dockerfile_arg("RAY_VERSION") == spec["rayVersion"]


def pod_specs() -> Iterator[dict[str, Any]]:
    for _, doc in documents():
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["spec"]["template"]["spec"]
        elif doc["kind"] == "RayCluster":
            yield doc["spec"]["headGroupSpec"]["template"]["spec"]
            for g in doc["spec"]["workerGroupSpecs"]:
                yield g["template"]["spec"]


def containers() -> Iterator[dict[str, Any]]:
    for pod in pod_specs():
        yield from pod["containers"]


def test_references_between_the_manifests_hold() -> None:
    """Every ConfigMap, Secret and claim a pod names exists; selectors select pods; every pod
    gets the same settings, and the logs volume sits where PHLOEM_HOME puts the logs."""
    names = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    home = one("ConfigMap", "phloem-config")["data"]["PHLOEM_HOME"]
    for pod in pod_specs():
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names
            if "secret" in v:
                assert ("Secret", v["secret"]["secretName"]) in names
        for c in pod["containers"]:
            refs = c["envFrom"]
            assert {r["configMapRef"]["name"] for r in refs if "configMapRef" in r} == {
                "phloem-config"
            }
            assert {r["secretRef"]["name"] for r in refs if "secretRef" in r} == {"phloem-secrets"}
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if f"{home}/logs" in mounts:
                claim = volumes[mounts[f"{home}/logs"]]["persistentVolumeClaim"]["claimName"]
                assert claim == "phloem-logs"
    labelled = [d["spec"]["template"]["metadata"]["labels"] for d in of_kind("Deployment")]
    for svc in of_kind("Service"):
        assert any(svc["spec"]["selector"].items() <= lab.items() for lab in labelled)
    (cluster,) = of_kind("RayCluster")
    ray_labels = {"ray.io/cluster": cluster["metadata"]["name"], "ray.io/node-type": "worker"}
    for policy in of_kind("NetworkPolicy"):
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= ray_labels.items()
    for pdb in of_kind("PodDisruptionBudget"):
        wanted = pdb["spec"]["selector"]["matchLabels"].items()
        assert any(wanted <= lab.items() for lab in [*labelled, ray_labels]), pdb["metadata"]


def test_the_server_and_its_probes_match_the_service() -> None:
    server = one("Deployment", "phloem-server")["spec"]["template"]["spec"]["containers"][0]
    command = server["args"]
    port = int(command[command.index("--port") + 1])
    assert "--no-scheduler" in command
    assert server["ports"][0]["containerPort"] == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert server[probe]["httpGet"]["path"] == "/api/v1/health"
    from phloem.server.app import API_PREFIX
    from phloem.server.routes.health import router

    assert {API_PREFIX + getattr(r, "path", "") for r in router.routes} >= {"/api/v1/health"}
    svc = one("Service", "phloem")
    assert svc["spec"]["ports"][0]["port"] == port


def test_the_prometheus_job_is_valid_and_scrapes_the_service(tmp_path: Path) -> None:
    config = one("ConfigMap", "phloem-prometheus")["data"]["prometheus.yml"]
    job = yaml.safe_load(config)["scrape_configs"][0]
    svc = one("Service", "phloem")
    target = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc.cluster.local"
    assert job["static_configs"][0]["targets"] == [f"{target}:{svc['spec']['ports'][0]['port']}"]
    assert job["metrics_path"] == "/metrics"
    if shutil.which("promtool") is None:  # .ci/run installs Prometheus, which ships it
        pytest.fail("this test needs promtool: apt-get install -y prometheus")
    path = tmp_path / "prometheus.yml"
    path.write_text(config)
    done = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- the doc and the code agree -------------------------------------------------------------


def texts() -> dict[str, str]:
    found = {p.name: p.read_text() for p in [*MANIFESTS, DOCKERFILE]}
    found["deploy.md"] = DOC.read_text()
    return found


@cache
def source_text() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "src" / "phloem").rglob("*.py")))


def test_every_phloem_variable_named_exists_in_the_code() -> None:
    named = {
        (where, var)
        for where, text in texts().items()
        for var in re.findall(r"\bPHLOEM_[A-Z0-9_]*[A-Z0-9]\b", text)
    }
    assert {v for _, v in named} >= {"PHLOEM_DB_URL", "PHLOEM_ARTIFACTS_URL", "PHLOEM_EXECUTOR"}
    missing = sorted(f"{where}: {var}" for where, var in named if f'"{var}"' not in source_text())
    assert missing == [], "variables phloem never reads"


def dockerfile_arg(name: str) -> str:
    (value,) = re.findall(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.M)
    return value


def test_the_dockerfile_installs_real_extras_and_copies_what_exists() -> None:
    text = DOCKERFILE.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^([a-z0-9_-]+) = \[", section, re.M))
    assert {"postgres", "server", "dev"} <= extras
    wanted = [e for group in re.findall(r'"\.\[([a-z0-9_,-]+)\]"', text) for e in group.split(",")]
    assert wanted, "the Dockerfile installs phloem with its extras"
    assert [e for e in wanted if e not in extras] == []
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        src = dockerfile_arg("PIPELINES") if src == "${PIPELINES}" else src
        for part in src.split():
            assert (ROOT / part).exists(), f"COPY {part}: not in the build context"
    assert "PHLOEM_HOME=/var/lib/phloem" in text
    # tini stays the init of phloem's own pods: they give args, never a command of their own
    assert 'ENTRYPOINT ["tini", "--"]' in text
    for kind in ("Deployment", "Job"):
        for doc in of_kind(kind):
            for c in doc["spec"]["template"]["spec"]["containers"]:
                assert "command" not in c and c["args"], doc["metadata"]["name"]


# -- phloem commands named in the doc and the manifests ---------------------------------------


def command_lines() -> Iterator[tuple[str, str]]:
    """(where, shell text) for every place a phloem command may be written."""
    doc = DOC.read_text()
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", doc, re.M | re.S):
        yield "deploy.md", block.replace("\\\n", " ")
    prose = re.sub(r"^```.*?^```", "", doc, flags=re.M | re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        yield "deploy.md", span
    for name, doc_ in documents():
        for c in _containers_of(doc_):
            words = [*c.get("command", []), *c.get("args", [])]
            if words[:2] == ["sh", "-c"]:
                yield name, words[2]
            else:
                yield name, shlex.join(words)
        if doc_["kind"] == "ConfigMap":
            for value in doc_.get("data", {}).values():
                for line in value.splitlines():
                    yield name, line.lstrip("# ")
    for line in DOCKERFILE.read_text().splitlines():
        yield "Dockerfile", line.lstrip("# ")


def _containers_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] in ("Deployment", "Job"):
        return list(doc["spec"]["template"]["spec"]["containers"])
    if doc["kind"] == "RayCluster":
        groups = [doc["spec"]["headGroupSpec"], *doc["spec"]["workerGroupSpecs"]]
        return [c for g in groups for c in g["template"]["spec"]["containers"]]
    return []


SHELL_STOPS = {"&&", "||", "|", ";", "<", ">", "&", "\\"}


def phloem_invocations(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue  # prose with an apostrophe
        for i, word in enumerate(words):
            if word == "phloem" and (i == 0 or words[i - 1] not in ("-n", "--namespace")):
                rest = []
                for w in words[i + 1 :]:
                    if w in SHELL_STOPS or w == "phloem":
                        break
                    rest.append(w)
                yield rest


@cache
def cli() -> Any:
    """The ``phloem`` command as Typer builds it (a click-like group of commands)."""
    import typer.main

    from phloem.cli.main import app

    return typer.main.get_command(app)


def choices(param: Any) -> list[str] | None:
    """The values an option takes when its type is an enum (``--executor``)."""
    kind = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return [str(member.value) for member in kind]
    return None


def check_invocation(words: list[str]) -> list[str]:
    """What is wrong with ``phloem WORDS``: an unknown command, option or choice."""
    command = cli()
    path = ["phloem"]
    i = 0
    while hasattr(command, "commands") and i < len(words) and not words[i].startswith("-"):
        sub = command.commands.get(words[i])
        if sub is None:
            if re.fullmatch(r"[a-z][a-z-]*", words[i]):
                return [f"{' '.join(path)} has no command {words[i]!r}"]
            return []  # a placeholder or prose
        command, i = sub, i + 1
        path.append(command.name or "")
    options = {
        opt: p
        for p in command.params
        if p.param_type_name == "option"
        for opt in [*p.opts, *p.secondary_opts]
    }
    problems = []
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") or word == "-":
            continue
        flag, eq, value = word.partition("=")
        param = options.get(flag)
        if param is None:
            problems.append(f"{' '.join(path)} has no option {flag}")
            continue
        if not param.is_flag and not eq and i < len(words):
            value = words[i]
            i += 1
        allowed = choices(param)
        if allowed is not None and value and value.islower() and value not in allowed:
            problems.append(f"{' '.join(path)} {flag}: {value!r} is not one of {allowed}")
    return problems


def test_every_phloem_command_and_flag_named_exists() -> None:
    seen = 0
    problems = []
    for where, text in command_lines():
        for words in phloem_invocations(text):
            seen += 1
            problems += [f"{where}: {p}" for p in check_invocation(words)]
    assert seen >= 10, "the doc shows the commands it relies on"
    assert problems == []


@pytest.mark.parametrize(
    "words",
    [
        ["serve"],
        ["server", "--no-schedulers"],
        ["users", "add", "x", "--rol", "admin"],
        ["run", "p.py", "--executor", "kubernetes"],
    ],
)
def test_the_command_check_catches_mistakes(words: list[str]) -> None:
    assert check_invocation(words)


def test_the_timings_the_doc_gives_are_phloems_defaults() -> None:
    """The ConfigMap spells out the defaults, and the doc's table says them in seconds."""
    from phloem.config import (
        DEFAULT_HEARTBEAT_TIMEOUT,
        DEFAULT_LEASE_TTL,
        DEFAULT_OUTAGE_TIMEOUT,
    )
    from phloem.executors.ray import DEFAULT_MAX_IDLE

    data = one("ConfigMap", "phloem-config")["data"]
    doc = DOC.read_text()
    for var, default in [
        ("PHLOEM_LEASE_TTL", DEFAULT_LEASE_TTL),
        ("PHLOEM_DB_OUTAGE_TIMEOUT", DEFAULT_OUTAGE_TIMEOUT),
        ("PHLOEM_HEARTBEAT_TIMEOUT", DEFAULT_HEARTBEAT_TIMEOUT),
    ]:
        assert float(data[var]) == default, var
        (row,) = [line for line in doc.splitlines() if line.startswith(f"| `{var}` |")]
        assert f"{default:g} s" in row, row
    assert DEFAULT_MAX_IDLE == 60  # "let go after a minute without work"

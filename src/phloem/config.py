"""Where phloem keeps its state and how it behaves, read from ``PHLOEM_*`` environment variables.

A plain frozen dataclass, read in one place (``Settings.from_env()``) when the application
starts (``phloem.app.Phloem``), never as a side effect of importing phloem and never per call,
so two configurations can live in one process.

| variable | setting | default |
|---|---|---|
| ``PHLOEM_HOME`` | ``home`` | ``./.phloem`` |
| ``PHLOEM_DB_URL`` | ``db_url`` | ``sqlite:///$PHLOEM_HOME/phloem.db`` |
| ``PHLOEM_ARTIFACTS_URL`` | ``artifacts_url`` | ``$PHLOEM_HOME/artifacts`` |
| ``PHLOEM_ARTIFACTS_CONNECTION`` | ``artifacts_connection`` | none (the usual AWS variables) |
| ``PHLOEM_WORKERS`` | ``workers`` | one per CPU (at least 2) |
| ``PHLOEM_EXECUTOR`` | ``executor`` | ``local`` (or ``inline``, ``ray``) |
| ``PHLOEM_RAY_ADDRESS`` | ``ray_address`` | none: a local Ray for the process |
| ``PHLOEM_HEARTBEAT_TIMEOUT`` | ``heartbeat_timeout`` | 60 seconds (Ray workers) |
| ``PHLOEM_DB_OUTAGE_TIMEOUT`` | ``db_outage_timeout`` | 300 seconds |
| ``PHLOEM_PIPELINES`` | ``pipelines_dir`` | ``./pipelines`` |
| ``PHLOEM_PARALLELISM`` | ``parallelism`` | unlimited |
| ``PHLOEM_LEASE_TTL`` | ``lease_ttl`` | 30 seconds |
| ``PHLOEM_SECRET_KEY`` | ``secret_key`` | the key file ``$PHLOEM_HOME/secret.key`` |
| ``PHLOEM_SERVER_URL`` | ``server_url`` | none: commands read the local store |
| ``PHLOEM_TOKEN`` | ``token`` | none (the API token commands send to the server) |
| ``PHLOEM_SMTP_URL`` | ``smtp_url`` | none: e-mail alerts stay pending |
| ``PHLOEM_TRUSTED_PROXIES`` | ``trusted_proxies`` | none (``X-Forwarded-For`` is not believed) |
| ``PHLOEM_API_SCHED`` | ``api_sched`` | ``idle`` (``nice``: the API keeps the normal CPU class) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from phloem.errors import PhloemError
from phloem.states import ExecutorKind

#: seconds a driver's lease on a run lasts without renewal
DEFAULT_LEASE_TTL = 30.0
DEFAULT_OUTAGE_TIMEOUT = 300.0
#: seconds a Ray worker running an attempt may go without a sign of life
DEFAULT_HEARTBEAT_TIMEOUT = 60.0

N = TypeVar("N", int, float)

#: Default cap on one attempt's log.
DEFAULT_LOG_MAX_BYTES = 100 * 2**20


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    db_url: str
    artifacts_url: str
    workers: int
    #: the connection holding the artifact store's credentials and endpoint (S3)
    artifacts_connection: str | None = None
    #: the most one attempt's log keeps (``PHLOEM_LOG_MAX_BYTES``); the rest is dropped
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES
    db_outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT
    pipelines_dir: Path = Path("pipelines")
    parallelism: int | None = None
    lease_ttl: float = DEFAULT_LEASE_TTL
    #: the key that encrypts connections (``PHLOEM_SECRET_KEY``); else the key file
    secret_key: str | None = field(default=None, repr=False)
    #: the phloem server that the CLI's read and steer commands ask (``PHLOEM_SERVER_URL``);
    #: alerts link to runs there
    server_url: str | None = None
    #: the API token sent to it (``PHLOEM_TOKEN``)
    token: str | None = field(default=None, repr=False)
    #: where e-mail alerts are sent: ``smtp://host:port``, ``smtps://...`` (TLS), with
    #: ``?starttls=true``, ``user:password@`` or ``?connection=NAME``, ``?from=ADDRESS``
    smtp_url: str | None = field(default=None, repr=False)
    #: where attempts run when a command does not say (``PHLOEM_EXECUTOR``)
    executor: str = "local"
    #: the Ray cluster to join (``PHLOEM_RAY_ADDRESS``: ``auto``, ``host:port``,
    #: ``ray://host:10001``); None starts a local Ray for the process
    ray_address: str | None = None
    #: seconds a Ray worker running an attempt may go silent before the attempt fails
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    #: the reverse proxies (addresses or networks) whose ``X-Forwarded-For`` the server
    #: believes for the client's address (``PHLOEM_TRUSTED_PROXIES``, comma-separated)
    trusted_proxies: tuple[str, ...] = ()
    #: how ``phloem server``'s API process gives the CPUs way to its scheduler: "idle" (the
    #: idle scheduling class at niceness 19) or "nice" (the normal class at niceness 19)
    api_sched: str = "idle"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def secret_key_path(self) -> Path:
        """Where the key that encrypts connections lives when ``PHLOEM_SECRET_KEY`` is unset."""
        return self.home / "secret.key"

    @classmethod
    def from_env(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        scratch_home: bool = False,
    ) -> Settings:
        """The settings the environment gives. ``home`` wins over ``PHLOEM_HOME``; with
        ``scratch_home`` and neither, a new temporary folder is the home (for a private
        in-memory store, whose artifacts and logs need not outlive it)."""
        env = os.environ if environ is None else environ
        if home is None and not env.get("PHLOEM_HOME") and scratch_home:
            import tempfile

            home = tempfile.mkdtemp(prefix="phloem-")
        base = Path(home or env.get("PHLOEM_HOME") or Path.cwd() / ".phloem").absolute()
        db_url = env.get("PHLOEM_DB_URL") or f"sqlite:///{base / 'phloem.db'}"
        artifacts = env.get("PHLOEM_ARTIFACTS_URL") or str(base / "artifacts")
        log_max = _positive_int(env, "PHLOEM_LOG_MAX_BYTES", DEFAULT_LOG_MAX_BYTES)
        return cls(
            home=base,
            db_url=db_url,
            artifacts_url=artifacts,
            artifacts_connection=(env.get("PHLOEM_ARTIFACTS_CONNECTION") or "").strip() or None,
            workers=_number(env, "PHLOEM_WORKERS", int, 0) or default_workers(),
            db_outage_timeout=_number(
                env, "PHLOEM_DB_OUTAGE_TIMEOUT", float, DEFAULT_OUTAGE_TIMEOUT
            ),
            pipelines_dir=Path(env.get("PHLOEM_PIPELINES") or "pipelines").resolve(),
            parallelism=_number(env, "PHLOEM_PARALLELISM", int, 0) or None,
            lease_ttl=_number(env, "PHLOEM_LEASE_TTL", float, DEFAULT_LEASE_TTL),
            secret_key=(env.get("PHLOEM_SECRET_KEY") or "").strip() or None,
            log_max_bytes=log_max,
            server_url=(env.get("PHLOEM_SERVER_URL") or "").strip() or None,
            token=(env.get("PHLOEM_TOKEN") or "").strip() or None,
            smtp_url=_smtp_url(env),
            executor=_executor(env),
            ray_address=(env.get("PHLOEM_RAY_ADDRESS") or "").strip() or None,
            heartbeat_timeout=_number(
                env, "PHLOEM_HEARTBEAT_TIMEOUT", float, DEFAULT_HEARTBEAT_TIMEOUT
            )
            or DEFAULT_HEARTBEAT_TIMEOUT,
            trusted_proxies=_trusted_proxies(env),
            api_sched=_api_sched(env),
        )

    def ensure_dirs(self) -> None:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PhloemError(
                f"cannot create phloem's home folder {self.home}: {exc.strerror or exc}; set "
                "PHLOEM_HOME to a writable folder"
            ) from None


def _executor(env: Mapping[str, str]) -> str:
    raw = (env.get("PHLOEM_EXECUTOR") or "").strip().lower() or "local"
    if raw not in {k.value for k in ExecutorKind}:
        names = ", ".join(k.value for k in ExecutorKind)
        raise PhloemError(f"PHLOEM_EXECUTOR={raw!r} is not valid: use one of {names}")
    return raw


def _api_sched(env: Mapping[str, str]) -> str:
    raw = (env.get("PHLOEM_API_SCHED") or "").strip().lower() or "idle"
    if raw not in ("idle", "nice"):
        raise PhloemError(
            f"PHLOEM_API_SCHED={raw!r} is not valid: use 'idle' (the API runs only on CPU the "
            "scheduler leaves) or 'nice' (it keeps a small share of busy CPUs)"
        )
    return raw


def _trusted_proxies(env: Mapping[str, str]) -> tuple[str, ...]:
    from ipaddress import ip_network

    found = []
    for part in (env.get("PHLOEM_TRUSTED_PROXIES") or "").split(","):
        if not part.strip():
            continue
        try:
            ip_network(part.strip(), strict=False)
        except ValueError:
            raise PhloemError(
                f"PHLOEM_TRUSTED_PROXIES: {part.strip()!r} is not an IP address or network; "
                "write the reverse proxies' addresses separated by commas, e.g. "
                "127.0.0.1,10.0.0.0/8"
            ) from None
        found.append(part.strip())
    return tuple(found)


def _smtp_url(env: Mapping[str, str]) -> str | None:
    raw = (env.get("PHLOEM_SMTP_URL") or "").strip()
    if not raw:
        return None
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in ("smtp", "smtps") or not rest.split("?")[0].rsplit("@", 1)[-1]:
        raise PhloemError(
            "PHLOEM_SMTP_URL is not valid: write smtp://host:port (plain, add ?starttls=true for "
            "STARTTLS) or smtps://host:port (TLS), e.g. smtps://user:password@mail.example.org"
        )
    return raw


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise PhloemError(f"{name}={raw!r} is not valid: use a positive whole number of bytes")
    return value


def _number(env: Mapping[str, str], name: str, kind: type[N], default: N) -> N:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number of seconds"
        raise PhloemError(f"{name}={text!r} is not valid: set it to {what}, or unset it") from None
    if value < 0:
        raise PhloemError(f"{name}={text!r} must not be negative")
    return value


def default_workers() -> int:
    return max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)


def terminal_forced(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment makes rich treat output that is not a terminal as one
    (``TTY_COMPATIBLE=1``, or a non-empty ``FORCE_COLOR`` unless ``TTY_COMPATIBLE=0``): the
    CLI then prints its tables with rich rather than as the plain text rich would print."""
    env = os.environ if environ is None else environ
    compatible = env.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = env.get("FORCE_COLOR")
    return force is not None and force != ""

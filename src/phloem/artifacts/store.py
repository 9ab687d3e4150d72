"""Content-addressed artifact storage on a local directory or any fsspec URL (``s3://…``).

Layout: ``<root>/sha256/<first two hex>/<digest>.<ext>``. Keys come from the digest only, so
equal bytes are stored once and no user string ever becomes a path. On a file system, writes go
to a temporary name in the same directory and are renamed into place, so readers never see a
partial file; on an object store (S3 and the like) an object appears whole or not at all, so
it is written under its key directly (large ones in parts). Every read is checked against the
digest before it is deserialized: phloem unpickles only bytes it wrote itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from phloem.errors import ArtifactError, SerializationError

from .ref import ArtifactRef
from .serializers import by_name, dump, type_name

#: object stores whose writes are atomic per object: no temporary name, no rename (a copy there)
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})
#: objects larger than twice this go up in parts of this size (S3 multipart upload)
PART_SIZE = 16 * 2**20

_MISSING_HINT = (
    "check that every scheduler and worker uses the same artifact root and that nothing deleted "
    "files under it; re-running the task that produced it will store it again"
)


class _BytesCache:
    """A small LRU of verified artifact bytes, bounded by entry count and total size.

    Bytes, not loaded values: every :meth:`ArtifactStore.get` deserializes a fresh object, so a
    task that mutates its input (``df["x"] = …``) cannot change what the next task reads, while
    the read and the integrity check are still paid once per worker.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            data = self._items.get(digest)
            if data is not None:
                self._items.move_to_end(digest)
            return data

    def put(self, digest: str, data: bytes) -> None:
        # One item may take at most a quarter of the budget, so a single huge artifact
        # cannot flush everything the mapped tasks keep re-reading.
        if self.max_entries <= 0 or len(data) > self.max_bytes // 4:
            return
        with self._lock:
            if digest in self._items:
                return
            self._items[digest] = data
            self._size += len(data)
            while len(self._items) > self.max_entries or self._size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)


class ArtifactStore:
    """Stores task outputs as content-addressed files under ``root``.

    ``root`` is a local directory (made absolute now, created on first write) or an fsspec URL;
    fsspec is imported on first use, so building a store costs nothing. ``options`` are the
    file system's (for S3: key, secret, client_kwargs with endpoint_url and region_name); without
    them the usual environment applies (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...).
    """

    def __init__(
        self,
        root: str,
        *,
        options: Mapping[str, Any] | None = None,
        cache_entries: int = 64,
        cache_bytes: int = 256 * 2**20,
    ) -> None:
        self.root = root if "://" in root else os.path.abspath(os.path.expanduser(root))
        self.options: dict[str, Any] = dict(options or {})
        self._cache = _BytesCache(cache_entries, cache_bytes)
        self._shared: dict[str, object] = {}  # decoded values, see get_shared
        self._lock = threading.Lock()
        self._fs: Any = None
        self._base = ""
        self._local = False
        self._object_store = False
        self._made_dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    # Stores travel to worker processes (and Ray actors): send the configuration, not locks.
    def __getstate__(self) -> dict[str, object]:
        return {
            "root": self.root,
            "options": self.options,
            "cache_entries": self._cache.max_entries,
            "cache_bytes": self._cache.max_bytes,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["root"],
            options=state.get("options"),
            cache_entries=state["cache_entries"],
            cache_bytes=state["cache_bytes"],
        )

    def put(self, value: object) -> ArtifactRef:
        """Serialize ``value`` with the serializer meant for it and store it (once per content)."""
        serializer, data = dump(value)
        return self.put_bytes(data, serializer.name, type_name(value))

    def put_bytes(self, data: bytes, serializer: str, type_name: str) -> ArtifactRef:
        """Store already-serialized ``data``; if identical bytes are there already, keep them."""
        ext = by_name(serializer).ext
        digest = hashlib.sha256(data).hexdigest()
        ref = ArtifactRef(digest, serializer, type_name, len(data), _key(digest, ext))
        fs, path = self._fs_path(ref)
        if self._object_store:
            self._put_object(fs, path, ref, data)
            return ref
        if _size(fs, path) == len(data):
            return ref
        parent = path.rpartition("/")[0]
        tmp = f"{parent}/.tmp-{digest[:16]}-{os.urandom(8).hex()}"
        try:
            # Remote directory checks cost a request: make each shard directory once per
            # process. Locally it is one cheap syscall, and survives a directory removed since.
            if self._local or parent not in self._made_dirs:
                fs.makedirs(parent, exist_ok=True)
                self._made_dirs.add(parent)
            fs.pipe_file(tmp, data)
            if self._local:
                os.replace(tmp, path)  # atomic on POSIX and Windows, replaces a torn copy
            else:
                fs.mv(tmp, path)
        except BaseException as exc:
            try:
                fs.rm_file(tmp)
            except Exception:
                pass
            if isinstance(exc, OSError):
                raise ArtifactError(
                    f"cannot write artifact to {self.location(ref)}: {exc}", artifact=digest
                ) from exc
            raise
        return ref

    def _put_object(self, fs: Any, path: str, ref: ArtifactRef, data: bytes) -> None:
        try:
            if _size(fs, path) == len(data):
                return
            if len(data) > 2 * PART_SIZE and "s3" in _protocols(fs):
                fs.pipe_file(path, data, chunksize=PART_SIZE)
            else:
                fs.pipe_file(path, data)
        except Exception as exc:  # object stores raise their clients' own errors, not OSError
            raise ArtifactError(
                f"cannot write artifact to {self.location(ref)}: {_reason(exc)}; check that the "
                "object store is reachable and the credentials allow writing (the attempt is "
                "retried per the task's retries)",
                artifact=ref.digest,
            ) from exc

    def get(self, ref: ArtifactRef) -> object:
        """Load the value behind ``ref``, refusing bytes whose sha256 does not match."""
        serializer = by_name(ref.serializer)
        data = self._cache.get(ref.digest)
        if data is None:
            data = self._read_verified(ref)
            self._cache.put(ref.digest, data)
        try:
            return serializer.loads(data)
        except Exception as exc:
            raise SerializationError(
                f"artifact at {self.location(ref)} (a {ref.type_name} stored with "
                f"{ref.serializer}) could not be loaded: {type(exc).__name__}: {exc}; the code "
                "and libraries that define it must be importable in this worker",
                artifact=ref.digest,
            ) from exc

    def get_shared(self, ref: ArtifactRef) -> object:
        """The decoded value, shared between callers (a few are kept): for reading parts of
        one large value many times, e.g. the elements of a mapping source. Callers must copy
        what they hand on."""
        value = self._shared.get(ref.digest)
        if value is None:
            value = self.get(ref)
            self._shared[ref.digest] = value
            while len(self._shared) > 4:
                self._shared.pop(next(iter(self._shared)))
        return value

    def read_bytes(self, ref: ArtifactRef) -> bytes:
        """The artifact's bytes as stored, checked against its digest (not decoded)."""
        data = self._cache.get(ref.digest)
        return data if data is not None else self._read_verified(ref)

    def stream(self, ref: ArtifactRef, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The artifact's bytes as stored, in chunks, without holding them all (a download).
        Missing: ArtifactError before the first chunk. The digest is checked as it streams;
        a mismatch raises ArtifactError after the last chunk, so the receiver, which has the
        digest, must check it too."""
        fs, path = self._fs_path(ref)
        try:
            fh = fs.open(path, "rb")
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact {ref.digest[:12]} ({ref.type_name}) is missing at "
                f"{self.location(ref)}; {_MISSING_HINT}",
                artifact=ref.digest,
            ) from None
        h = hashlib.sha256()
        with fh:
            while data := fh.read(chunk):
                h.update(data)
                yield data
        if h.hexdigest() != ref.digest:
            raise ArtifactError(
                f"artifact at {self.location(ref)} does not match its digest; re-run the task "
                "that produced it",
                artifact=ref.digest,
            )

    def read_into(self, ref: ArtifactRef, target: memoryview) -> None:
        """Read the artifact's bytes into ``target`` (exactly ``ref.size`` bytes) and check
        them against its digest: for large values assembled from parts without a copy."""
        _, path = self._fs_path(ref)
        if not self._local:
            target[:] = self._read_verified(ref)
            return
        try:
            with open(path, "rb", buffering=0) as f:
                n = f.readinto(target)
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact {ref.digest[:12]} ({ref.type_name}) is missing at "
                f"{self.location(ref)}; {_MISSING_HINT}",
                artifact=ref.digest,
            ) from None
        if n != ref.size or hashlib.sha256(target).hexdigest() != ref.digest:
            target[:] = self._read_verified(ref)  # the full check, and its message

    def verify(self, ref: ArtifactRef) -> None:
        """Read the artifact from storage (not this process's cache) and check its digest:
        ArtifactError if it is missing or corrupt (a corrupt copy is moved aside, so storing
        the value again writes a good one)."""
        self._read_verified(ref)

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether the artifact is present with its full size (a torn copy does not count)."""
        fs, path = self._fs_path(ref)
        return _size(fs, path) == ref.size

    def location(self, ref: ArtifactRef) -> str:
        """Full path (local) or URL under the configured root (remote), for messages and lineage."""
        _, path = self._fs_path(ref)
        return path if self._local else f"{self.root.rstrip('/')}/{ref.key}"

    def _read_verified(self, ref: ArtifactRef) -> bytes:
        fs, path = self._fs_path(ref)
        try:
            data = bytes(fs.cat_file(path))
        except FileNotFoundError:
            raise ArtifactError(
                f"artifact {ref.digest[:12]} ({ref.type_name}) is missing at "
                f"{self.location(ref)}; {_MISSING_HINT}",
                artifact=ref.digest,
            ) from None
        except Exception as exc:  # OSError, or an object store client's own error
            raise ArtifactError(
                f"cannot read artifact at {self.location(ref)}: {_reason(exc)}",
                artifact=ref.digest,
            ) from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.digest:
            # move the bad copy aside, so re-running the producer writes a good one (a put
            # skips a file that is already there with the right size)
            with contextlib.suppress(Exception):
                fs.mv(path, f"{path}.corrupt-{actual[:12]}")
            raise ArtifactError(
                f"artifact at {self.location(ref)} is corrupt or was modified after it was "
                f"written (sha256 {actual[:12]}…, expected {ref.digest[:12]}…, "
                f"{len(data)} bytes, expected {ref.size}); phloem refuses to load or unpickle it. "
                "Re-run the task that produced it.",
                artifact=ref.digest,
            )
        return data

    def _fs_path(self, ref: ArtifactRef) -> tuple[Any, str]:
        if self._fs is None:
            self._open()
        return self._fs, f"{self._base}/{ref.key}"

    def _open(self) -> None:
        with self._lock:
            if self._fs is not None:
                return
            try:
                from fsspec.core import url_to_fs

                fs, base = url_to_fs(self.root, **self.options)
            except (ImportError, ValueError, TypeError) as exc:
                raise ArtifactError(
                    f"cannot open artifact store {self.root!r}: {exc} (for s3:// install "
                    "phloem[s3])"
                ) from exc
            protocols = _protocols(fs)
            self._local = "file" in protocols
            self._object_store = bool(_OBJECT_STORES.intersection(protocols))
            self._base = base.rstrip("/")
            self._fs = fs


def _protocols(fs: Any) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _key(digest: str, ext: str) -> str:
    return f"sha256/{digest[:2]}/{digest}.{ext}"


def _size(fs: Any, path: str) -> int | None:
    try:
        return int(fs.size(path))
    except FileNotFoundError:
        return None

"""``phloem.File``: a path a task reads or writes, seen by its content.

A ``File`` given to a task as an argument (or a parameter) enters the task's cache key by the
sha256 of its content, and a task may return ``File`` objects: the output records the path and
the content hash, so downstream tasks and the cache see the file by what it holds, as
``dvc repro`` does. A directory is hashed as the sorted list of its files' relative paths and
contents.

Hashes are remembered per process by (size, modification time, inode), so an unchanged file is
read once, not once per run or per task instance (a file written in the last two seconds is
always read again: its time stamp may not have moved yet).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

#: marks a stored ``File`` in a task's JSON output: ``{"__file__": path, "sha256": ..., "size": n}``
FILE_MARKER = "__file__"
_CHUNK = 1 << 20
_RACY_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class File:
    """A file (or directory) path, tracked by content. ``os.fspath(f)`` and ``open(f)`` work.

    ``digest`` is the content hash recorded when a task returned it (None on one made by
    hand); ``File.verify()`` checks the file still holds it."""

    path: str
    digest: str | None = None

    def __init__(self, path: str | os.PathLike[str], digest: str | None = None) -> None:
        object.__setattr__(self, "path", os.fspath(path))
        object.__setattr__(self, "digest", digest)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def content_hash(self) -> str:
        """The sha256 of what the path holds now (a directory: of its files and names)."""
        return file_digest(self.path)

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        with open(self.path, encoding=encoding) as fh:
            return fh.read()

    def to_marker(self) -> dict[str, Any]:
        """The JSON a task's output keeps for this file: its path and content hash now."""
        digest, size = _digest_and_size(self.path)
        return {FILE_MARKER: self.path, "sha256": digest, "size": size}

    @classmethod
    def from_marker(cls, d: dict[str, Any]) -> File:
        return cls(str(d[FILE_MARKER]), str(d["sha256"]))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """As a run parameter (``def p(raw: phloem.File = phloem.File("data/raw.csv"))``):
        given and stored as its path, a ``File`` inside the tasks."""
        from pydantic_core import core_schema as cs

        from_text = cs.no_info_after_validator_function(cls, cs.str_schema(min_length=1))
        return cs.json_or_python_schema(
            json_schema=from_text,
            python_schema=cs.union_schema([cs.is_instance_schema(cls), from_text]),
            serialization=cs.plain_serializer_function_ser_schema(lambda f: f.path),
        )


def is_file_marker(value: object) -> bool:
    return type(value) is dict and FILE_MARKER in value and len(value) == 3 and "sha256" in value


class FileMissing(FileNotFoundError):
    """A ``phloem.File`` names a path that does not exist (a FileNotFoundError with the path
    and what to do)."""


_memo: dict[str, tuple[tuple[int, int, int], str, int]] = {}


def file_digest(path: str | os.PathLike[str]) -> str:
    """The content hash of ``path`` (a file or a directory); raises FileMissing."""
    return _digest_and_size(os.fspath(path))[0]


def _digest_and_size(path: str) -> tuple[str, int]:
    full = os.path.abspath(path)
    try:
        st = os.stat(full)
    except FileNotFoundError:
        raise FileMissing(
            f"file {path!r} does not exist (looked at {full}); create it, or pass the path "
            "of an existing file to phloem.File"
        ) from None
    if os.path.isdir(full):
        return _dir_digest(full)
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    known = _memo.get(full)
    if known is not None and known[0] == stamp:
        return known[1], known[2]
    h = hashlib.sha256()
    with open(full, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    # remembered only when the file was last written well before it was read: a file
    # rewritten within the file system's timestamp granularity keeps its stamp, and a stale
    # hash must never be served (git's "racy" files)
    if st.st_mtime_ns < time.time_ns() - _RACY_NS:
        if len(_memo) > 10_000:
            _memo.clear()
        _memo[full] = (stamp, digest, st.st_size)
    return digest, st.st_size


def _dir_digest(root: str) -> tuple[str, int]:
    h = hashlib.sha256(b"dir\0")
    total = 0
    for base, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(base, name)
            digest, size = _digest_and_size(full)
            h.update(os.path.relpath(full, root).encode() + b"\0" + digest.encode() + b"\0")
            total += size
    return h.hexdigest(), total


__all__ = ["FILE_MARKER", "File", "FileMissing", "file_digest", "is_file_marker"]

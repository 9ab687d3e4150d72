"""Models stored in parts, the registry's default format: fast to store and load however large.

The model is pickled with protocol 5, its arrays kept out of the pickle stream (no copy); the
stream and every array buffer are cut into chunks of at most :data:`CHUNK` bytes, and each
chunk is an artifact of its own, content-addressed and checked like any other. Chunks are
hashed, written, read and verified on several threads (hashing and file I/O release the GIL),
and loading rebuilds the arrays straight over the verified bytes. A small manifest (the
version's artifact) lists the chunks; chunks equal between versions (an unchanged embedding
table) are stored once.

Nothing is unpickled before every chunk has passed its digest check.
"""

from __future__ import annotations

import mmap
import os
import pickle
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from phloem.artifacts import ArtifactRef, ArtifactStore
from phloem.artifacts.serializers import type_name
from phloem.errors import ArtifactError, SerializationError

#: the format's name, as the version's artifact records it
FORMAT = "model-parts"
CHUNK = 8 * 2**20
VERSION = 1

T = TypeVar("T")
R = TypeVar("R")


def _threads() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def _parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    if len(items) < 2:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(_threads(), len(items)), thread_name_prefix="phloem-parts") as ex:
        return list(ex.map(fn, items))


def _pickle(model: object) -> list[memoryview]:
    """The pickle stream, then each out-of-band buffer (contiguous ones; others stay in)."""
    buffers: list[memoryview] = []

    def take(buf: pickle.PickleBuffer) -> bool:
        try:
            buffers.append(buf.raw())
        except BufferError:
            return True  # not contiguous: pickled in the stream
        return False

    try:
        stream = pickle.dumps(model, protocol=5, buffer_callback=take)
    except Exception as exc:
        raise SerializationError(
            f"cannot pickle a {type_name(model)}: {type(exc).__name__}: {exc}; pass "
            "format='joblib' or a library's own format",
            type=type_name(model),
        ) from exc
    return [memoryview(stream), *buffers]


def _chunks(views: list[memoryview]) -> list[tuple[int, memoryview]]:
    return [
        (i, view[start : start + CHUNK])
        for i, view in enumerate(views)
        for start in range(0, max(len(view), 1), CHUNK)
    ]


def dump(model: object, artifacts: ArtifactStore) -> tuple[ArtifactRef, list[ArtifactRef]]:
    """Store ``model``; returns its manifest and the chunks it lists."""
    views = _pickle(model)

    def put(item: tuple[int, memoryview]) -> ArtifactRef:
        return artifacts.put_bytes(item[1], "raw", "bytes")  # type: ignore[arg-type]

    chunks = _chunks(views)
    refs = _parallel(put, chunks)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "type": type_name(model),
        "lengths": [v.nbytes for v in views],
        "chunks": [[i, r.digest, r.size, r.key] for (i, _), r in zip(chunks, refs, strict=True)],
    }
    from phloem.artifacts.serializers import by_name

    data = by_name(FORMAT).dumps(manifest)
    return artifacts.put_bytes(data, FORMAT, type_name(model)), refs


def _buffer(n: int) -> Any:
    """A writable buffer of ``n`` bytes, left to the kernel to zero as it is written (an
    anonymous map) rather than cleared up front."""
    if n == 0:
        return bytearray()
    return mmap.mmap(-1, n)


def load(manifest_ref: ArtifactRef, artifacts: ArtifactStore) -> Any:
    """The model a manifest lists, each chunk verified before anything is unpickled."""
    manifest = artifacts.get(manifest_ref)
    if not isinstance(manifest, dict) or manifest.get("version") != VERSION:
        raise ArtifactError(
            f"model manifest {manifest_ref.digest[:12]} is not one this phloem reads "
            "(written by a newer version?)",
            artifact=manifest_ref.digest,
        )
    buffers = [_buffer(n) for n in manifest["lengths"]]
    offsets = [0] * len(buffers)
    placed: list[tuple[int, int, ArtifactRef]] = []
    for i, digest, size, key in manifest["chunks"]:
        placed.append((i, offsets[i], ArtifactRef(digest, "raw", "bytes", size, key)))
        offsets[i] += size

    def read(item: tuple[int, int, ArtifactRef]) -> None:
        i, at, ref = item
        artifacts.read_into(ref, memoryview(buffers[i])[at : at + ref.size])

    _parallel(read, placed)
    views: Iterable[memoryview] = (memoryview(b) for b in buffers[1:])
    return pickle.loads(buffers[0], buffers=views)


__all__ = ["CHUNK", "FORMAT", "dump", "load"]

"""The cache as one run's driver uses it: when instances become ready, make their keys, look
them up in one query, and hand the engine the hits as facts; a miss runs, and its success
writes the entry in the commit that applies it.

A key that cannot be made (an input with no stable hash, a key function that raised) never
stops the task: it runs uncached, and the check records why for ``phloem cache explain``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from phloem.artifacts import ArtifactStore
from phloem.artifacts.codec import read_digests
from phloem.caching.fingerprint import Versions
from phloem.caching.keys import CacheContext, KeyParts, NoKey, TaskKeys
from phloem.caching.mode import CacheMode, uses_cache
from phloem.caching.verify import Verifier, artifact_digests
from phloem.dsl.spec import PipelineSpec
from phloem.engine import TI, CacheHit, Draft, Key, Snapshot, Transition
from phloem.records import RunRecord
from phloem.runner import Out, OutList
from phloem.runner.attempt import Element
from phloem.states import ACTIVE_TASK_STATES, TaskState
from phloem.store import ArtifactUse, CacheCheck, CacheEntry, Store

S = TaskState


@dataclass(frozen=True, slots=True)
class _Pending:
    key: str
    parts: str
    replace: bool


class RunCache:
    """One run's use of the cache (made by its session when some task caches)."""

    def __init__(
        self,
        store: Store,
        spec: PipelineSpec,
        run: RunRecord,
        artifacts: ArtifactStore,
        inputs: Any,
        mode: CacheMode = CacheMode.USE,
        versions: Versions | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.run = run
        self.inputs = inputs
        self.mode = mode
        self.versions = versions
        self.verifier = Verifier(artifacts)
        self.cached_tasks = frozenset(
            t.task_id
            for t in spec.tasks.values()
            if t.options.cache is not None and not t.is_sensor
        )
        self._keys: dict[str, TaskKeys] = {}
        #: plain misses' checks, written only if the instance does not succeed
        self._deferred: dict[Key, CacheCheck] = {}
        # the code parts are computed before any task runs: a task running in this process
        # (the inline executor) that changes a module-level value cannot change another's key
        for task_id in sorted(self.cached_tasks, key=lambda t: spec.tasks[t].index):
            self._task_keys(task_id)
        self._pending: dict[Key, _Pending] = {}
        self._seen: set[Key] = set()
        self._last: list[Key] = []
        #: tasks with entries when the run began (read on the first lookup): the others'
        #: lookups would find nothing, so they cost no query (an entry another run writes
        #: meanwhile is found by the next run)
        self._with_entries: set[str] | None = None
        #: checks and lineage to commit with the run's next decision
        self.checks: list[CacheCheck] = []
        self.uses: list[ArtifactUse] = []

    @classmethod
    def for_run(
        cls,
        store: Store,
        spec: PipelineSpec,
        run: RunRecord,
        artifacts: ArtifactStore,
        inputs: Any,
        mode: CacheMode = CacheMode.USE,
        versions: Versions | None = None,
    ) -> RunCache | None:
        """None when the run does not use the cache (no task caches, or mode ``off``)."""
        if not uses_cache(spec, mode):
            return None
        return cls(store, spec, run, artifacts, inputs, mode, versions)

    # -- lookups -------------------------------------------------------------------------------

    def lookup(self, d: Draft, now: float) -> list[CacheHit]:
        """Keys for the ready instances of caching tasks not looked up yet; the hits."""
        cands = [k for k in d.ready if k[0] in self.cached_tasks and k not in self._seen]
        self._last += cands
        if not cands:
            return []
        view = cast(Snapshot, _View(d))
        keyed: dict[Key, tuple[str, KeyParts, tuple[Any, ...], dict[str, Any]]] = {}
        for k in cands:
            self._seen.add(k)
            ti = d.w.get(k)
            try:
                args, kwargs = self.inputs.arguments(view, ti)
                digest, parts = self._task_keys(k[0]).key(args, kwargs, self._context_of(ti))
            except NoKey as exc:
                self._check(k, None, "uncacheable", exc.reason, exc.parts, None, now)
                continue
            except Exception as exc:  # the attempt meets (and reports) the same problem
                why = f"its arguments could not be read: {type(exc).__name__}: {exc}"
                self._check(k, None, "uncacheable", why, None, None, now)
                continue
            keyed[k] = (digest, parts, args, kwargs)
        if not keyed:
            return []
        if self.mode is CacheMode.REFRESH:
            for k, (digest, parts, _, _) in keyed.items():
                why = "the run asked to refresh the cache"
                self._miss(k, digest, parts, True, "refresh", why, now)
            return []
        if self._with_entries is None:
            self._with_entries = self.store.cache.tasks_with_entries(self.spec.name)
        wanted = {v[0] for k, v in keyed.items() if k[0] in self._with_entries}
        found = self.store.cache.find(wanted) if wanted else {}
        hits: list[CacheHit] = []
        for k, (digest, parts, args, kwargs) in keyed.items():
            entry = found.get(digest)
            if entry is None:
                self._miss(k, digest, parts, False, "miss", None, now)
                continue
            cache = self.spec.tasks[k[0]].options.cache
            assert cache is not None
            try:
                problem = self.verifier.problem(entry, cache, now)
            except Exception as exc:  # storage unreachable: recompute rather than guess
                problem = f"the entry could not be checked: {type(exc).__name__}: {exc}"
            if problem is not None:
                self._miss(k, digest, parts, True, "miss", problem, now)
                continue
            hits.append(self._hit(k, d.w.get(k), entry, parts, args, kwargs, now))
        return hits

    def _hit(
        self,
        k: Key,
        ti: TI,
        entry: CacheEntry,
        parts: KeyParts,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        now: float,
    ) -> CacheHit:
        where = _label(entry.task_id, entry.map_index)
        self._check(k, entry.key, "hit", None, parts, entry.run_id, now)
        for digest in artifact_digests(entry.output):
            self.uses.append(ArtifactUse(digest, k[0], k[1], "output", ti.try_number))
        for digest in _input_digests([*args, *kwargs.values()]):
            self.uses.append(ArtifactUse(digest, k[0], k[1], "input", ti.try_number))
        return CacheHit(
            k,
            entry.output,
            entry.map_length,
            entry.follow,
            f"cache hit: the output of {where} in run {entry.run_id}",
        )

    def _miss(
        self,
        k: Key,
        digest: str,
        parts: KeyParts,
        replace: bool,
        outcome: str,
        reason: str | None,
        now: float,
    ) -> None:
        text = json.dumps(parts.to_json(), sort_keys=True)
        self._pending[k] = _Pending(digest, text, replace)
        if outcome == "miss" and reason is None:
            # a plain miss: the entry its success writes records it (its key and parts), so
            # no check is written now; only an instance that ends otherwise gets one
            self._deferred[k] = CacheCheck(
                self.run.run_id, k[0], k[1], self.spec.name, digest, outcome, None, text, None, now
            )
            return
        self._check(k, digest, outcome, reason, parts, None, now, text)

    def _check(
        self,
        k: Key,
        digest: str | None,
        outcome: str,
        reason: str | None,
        parts: KeyParts | None,
        source: str | None,
        now: float,
        text: str | None = None,
    ) -> None:
        if text is None and parts is not None:
            text = json.dumps(parts.to_json(), sort_keys=True)
        self.checks.append(
            CacheCheck(
                self.run.run_id,
                k[0],
                k[1],
                self.spec.name,
                digest,
                outcome,
                reason,
                text,
                source,
                now,
            )
        )

    def _task_keys(self, task_id: str) -> TaskKeys:
        keys = self._keys.get(task_id)
        if keys is None:
            spec = self.spec.tasks[task_id]
            assert spec.options.cache is not None
            keys = TaskKeys(spec, spec.options.cache, self.versions)
            self._keys[task_id] = keys
        return keys

    def _context_of(self, ti: TI) -> Callable[[dict[str, Any], dict[str, str]], CacheContext]:
        return lambda named, hashes: self._context(ti, named, hashes)

    def _context(self, ti: TI, named: dict[str, Any], hashes: dict[str, str]) -> CacheContext:
        return CacheContext(
            pipeline=self.spec.name,
            task_id=ti.task_id,
            map_index=ti.map_index if ti.map_index >= 0 else None,
            logical_date=self.run.logical_date,
            params=dict(self.run.params),
            arguments=named,
            input_hashes=hashes,
        )

    # -- what the run's commits carry ---------------------------------------------------------

    def entries(self, transitions: Iterable[Transition]) -> list[CacheEntry]:
        """Entries for the misses that succeed in ``transitions``."""
        out = []
        for t in transitions:
            if t.new.state is not S.SUCCESS or t.old.state not in ACTIVE_TASK_STATES:
                continue
            p = self._pending.get(t.key)
            if p is None:
                continue
            out.append(
                CacheEntry(
                    key=p.key,
                    pipeline=self.spec.name,
                    task_id=t.new.task_id,
                    run_id=self.run.run_id,
                    map_index=t.new.map_index,
                    output=t.new.output,
                    map_length=t.new.map_length,
                    follow=t.new.follow,
                    parts=p.parts,
                    replace=p.replace,
                )
            )
        return out

    def checks_for(self, transitions: Iterable[Transition]) -> list[CacheCheck]:
        """The checks to commit with ``transitions``: those made since the last commit, and
        the deferred check of a plain miss that ends without success (or is reset)."""
        out = list(self.checks)
        for t in transitions:
            check = self._deferred.get(t.key)
            if check is not None and t.new.state is not S.SUCCESS and _ended(t):
                out.append(check)
        return out

    def applied(self, transitions: Sequence[Transition]) -> None:
        """Forget instances that were reset (a retry), so they are looked up again, and the
        misses whose success was applied."""
        self.checks, self.uses, self._last = [], [], []
        for t in transitions:
            if _ended(t):
                self._deferred.pop(t.key, None)
            if t.new.state is S.PENDING or t.new.state is S.SUCCESS:
                self._seen.discard(t.key)
                self._pending.pop(t.key, None)

    def restore(self) -> None:
        """The commit carrying the last lookups failed: look those instances up again."""
        for k in self._last:
            self._seen.discard(k)
            self._pending.pop(k, None)
            self._deferred.pop(k, None)
        self.checks, self.uses, self._last = [], [], []


def _ended(t: Transition) -> bool:
    return t.new.state.is_terminal or t.new.state is S.PENDING


def _label(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


def _input_digests(values: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, Out):
            out += read_digests(v.stored, v.path)  # ref["model"]: the model's artifact only
        elif isinstance(v, OutList):
            for s in v.stored:
                out += artifact_digests(s)
        elif isinstance(v, Element):
            out += artifact_digests(v.stored)
        elif isinstance(v, (list, tuple)):
            out += _input_digests(v)
        elif isinstance(v, dict):
            out += _input_digests(v.values())
    return list(dict.fromkeys(out))


class _View:
    """The snapshot as the draft changed it, as ``Inputs`` reads a snapshot: an upstream
    that ended in this very draft is seen with its output."""

    def __init__(self, d: Draft) -> None:
        self.w = d.w
        self.tis = _Tis(d)
        self.indexes = _Indexes(d)

    def instances(self, task_id: str) -> list[TI]:
        return [self.w.get((task_id, i)) for i in self.w.indexes(task_id)]


class _Tis:
    def __init__(self, d: Draft) -> None:
        self.w = d.w

    def __getitem__(self, key: Key) -> TI:
        return self.w.get(key)


class _Indexes:
    def __init__(self, d: Draft) -> None:
        self.w = d.w

    def __getitem__(self, task_id: str) -> list[int]:
        return self.w.indexes(task_id)


__all__ = ["CacheMode", "RunCache"]

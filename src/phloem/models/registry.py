"""The registry at work: one store and one artifact store, and who is acting.

Inside a task (``attempt`` set) a registered version is allocated at once but stays pending
until the attempt succeeds, and alias moves and decisions are attempt effects: a failed or
zombie attempt leaves nothing usable behind. Outside a task (a notebook, a script, the CLI)
everything is written at once.
"""

from __future__ import annotations

import getpass
import json
import math
import numbers
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phloem.artifacts import ArtifactRef, ArtifactStore
from phloem.artifacts.serializers import Serializer, by_name, type_name
from phloem.context import TaskContext
from phloem.effects import ModelAliasMoved, ModelDecided, ModelVersionReady, record
from phloem.errors import EvalDataMismatch, ModelNotFound, PhloemError, SerializationError
from phloem.models import parts
from phloem.models.decision import Decision, judge
from phloem.models.refs import ModelRef, check_alias, check_name, check_version, parse
from phloem.store import Store
from phloem.store.models import AliasMove, ModelVersion
from phloem.store.types import ArtifactRecord

#: model formats by name (``format=`` of register); None picks one
FORMATS: dict[str, Serializer] = {
    s.name: s
    for s in (by_name(n) for n in ("joblib", "xgboost", "lightgbm", "skops", "pickle"))
}
NATIVE = (by_name("xgboost"), by_name("lightgbm"))
#: the default: pickle protocol 5 in verified, parallel chunks (see phloem.models.parts)
PARTS = parts.FORMAT


def user() -> str:
    """Who acts outside a task: the operating-system user."""
    try:
        return getpass.getuser()
    except Exception:  # no user name (a container without one)
        return "unknown"


def attempt_label(ctx: TaskContext) -> str:
    where = f"[{ctx.map_index}]" if ctx.map_index is not None else ""
    return f"run {ctx.run_id} task {ctx.task_id}{where} try {ctx.try_number}"


def _record(ref: ArtifactRef) -> ArtifactRecord:
    return ArtifactRecord(ref.digest, ref.serializer, ref.type_name, ref.size, ref.key)


def _number(what: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        item = getattr(value, "item", None)
        if callable(item):
            return _number(what, key, item())
        raise PhloemError(
            f"{what}: metric '{key}' must be a number, not {type(value).__name__} ({value!r}); "
            "put text in params= or tags="
        )
    return float(value)


def _metrics(what: str, metrics: Mapping[str, Any] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise PhloemError(f"{what}: metrics must be a dict of name -> number")
    return {str(k): _number(what, str(k), v) for k, v in metrics.items()}


def _mapping(what: str, field: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PhloemError(f"{what}: {field} must be a dict, not {type(value).__name__}")
    # JSON-able values as they are, others as their text
    return {str(k): json.loads(json.dumps(v, default=str)) for k, v in value.items()}


def choose_format(model: object, format: str | None) -> str:
    """The format ``format`` names, else XGBoost's or LightGBM's own where the model is one
    of theirs, else the parts format."""
    if format is None:
        for native in NATIVE:
            if native.handles(model):
                return native.name
        return PARTS
    if format != PARTS and format not in FORMATS:
        raise PhloemError(
            f"unknown model format {format!r}; use one of {PARTS}, {', '.join(FORMATS)} (or "
            "leave it out to pick one)"
        )
    return format


def store_model(
    name: str, model: object, format: str, artifacts: ArtifactStore
) -> tuple[ArtifactRef, list[ArtifactRef]]:
    """Store ``model`` in ``format``: the artifact that stands for it, and any parts."""
    if format == PARTS:
        return parts.dump(model, artifacts)
    serializer = FORMATS[format]
    try:
        data = serializer.dumps(model)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"model '{name}' ({type_name(model)}) cannot be stored as {format}: "
            f"{type(exc).__name__}: {exc}; pass format= another format",
            model=name,
        ) from exc
    return artifacts.put_bytes(data, serializer.name, type_name(model)), []


def load_model(ref: ArtifactRef, artifacts: ArtifactStore) -> Any:
    if ref.serializer == PARTS:
        return parts.load(ref, artifacts)
    return artifacts.get(ref)


@dataclass
class Registry:
    """Model versions, aliases and decisions in ``store``, models in ``artifacts``."""

    store: Store
    artifacts: ArtifactStore
    who: str
    attempt: TaskContext | None = None

    # -- writing ----------------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any,
        *,
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        eval_data: Any = None,
        description: str | None = None,
        format: str | None = None,
    ) -> int:
        what = f"registering model '{name}'"
        check_name(name)
        values = _metrics(what, metrics)
        params_, tags_ = _mapping(what, "params", params), _mapping(what, "tags", tags)
        chosen = choose_format(model, format)
        return self._register(
            name, model, chosen, values, params_, tags_, self.eval_artifact(eval_data),
            description,
        )

    def _register(
        self,
        name: str,
        model: Any,
        format: str,
        metrics: dict[str, float],
        params: dict[str, Any],
        tags: dict[str, Any],
        evaluation: tuple[str, ArtifactRecord | None] | None,
        description: str | None,
    ) -> int:
        ref, chunks = store_model(name, model, format, self.artifacts)
        eval_digest, eval_record = evaluation or (None, None)
        ctx = self.attempt
        owner = None
        if ctx is not None:
            map_index = -1 if ctx.map_index is None else ctx.map_index
            owner = (ctx.run_id, ctx.task_id, map_index, ctx.try_number)
        version = self.store.models.allocate(
            name,
            _record(ref),
            metrics=metrics,
            params=params,
            tags=tags,
            eval_digest=eval_digest,
            description=description,
            owner=owner,
            who=self.who,
            now=time.time(),
            artifacts=[*([eval_record] if eval_record else []), *map(_record, chunks)],
        )
        if ctx is not None:
            uses = [(ref.digest, "model")]
            if eval_record is not None:
                uses.append((eval_record.digest, "input"))  # it was evaluated on it
            record(ModelVersionReady(name, version, tuple(uses)), what="phloem.models.register()")
            ctx.log.info(
                "registered model %s version %d (%s, %d bytes); usable once this task succeeds",
                name, version, format, ref.size + sum(c.size for c in chunks),
            )
        return version

    def eval_artifact(self, eval_data: Any) -> tuple[str, ArtifactRecord | None] | None:
        """The evaluation data's content hash (and its artifact, stored for lineage): an
        ArtifactRef or a sha256 hex digest as they are, any other value stored first."""
        if eval_data is None:
            return None
        if isinstance(eval_data, ArtifactRef):
            return eval_data.digest, _record(eval_data)
        if isinstance(eval_data, str) and len(eval_data) == 64:
            try:
                int(eval_data, 16)
                return eval_data.lower(), None
            except ValueError:
                pass
        ref = self.artifacts.put(eval_data)
        return ref.digest, _record(ref)

    def set_alias(
        self,
        name: str,
        version: int,
        alias: str,
        *,
        reason: str | None = None,
        kind: str = "set",
    ) -> AliasMove | None:
        check_name(name)
        check_alias(alias)
        check_version(version)
        ctx = self.attempt
        if ctx is None:
            return self.store.models.set_alias(
                name, alias, version, reason=reason, who=self.who, now=time.time(), kind=kind
            )
        found = self.store.models.version(name, version)
        if not found.ready and not self._mine(found):
            self.store.models.version(name, version, ready=True)  # raises
        record(
            ModelAliasMoved(name, alias, version, reason, self.who, time.time()),
            what="phloem.models.set_alias()",
        )
        ctx.log.info(
            "model %s: alias %s -> version %d once this task succeeds", name, alias, version
        )
        return None

    def _mine(self, v: ModelVersion) -> bool:
        """Registered by the running attempt (pending until it succeeds)."""
        ctx = self.attempt
        return ctx is not None and (v.run_id, v.task_id, v.map_index, v.try_number) == (
            ctx.run_id,
            ctx.task_id,
            -1 if ctx.map_index is None else ctx.map_index,
            ctx.try_number,
        )

    def rollback(self, name: str, alias: str, *, reason: str | None = None) -> AliasMove:
        """Move ``alias`` back to the version it pointed at before its current one (earlier
        rollbacks undone in turn, as an undo stack); recorded as a move like any other."""
        check_name(name)
        check_alias(alias)
        current = self.store.models.aliases(name).get(alias)
        if current is None:
            raise self._no_alias(name, alias)
        stack: list[int] = []
        for move in self.store.models.alias_history(name, alias):
            if move.kind == "rollback" and stack:
                stack.pop()
            else:
                stack.append(move.version)
        if len(stack) < 2:
            raise PhloemError(
                f"alias '{alias}' of model '{name}' has no earlier version to roll back to "
                f"(it points at version {current}); use `phloem models promote {name} VERSION "
                f"--alias {alias}`",
                model=name,
            )
        target = stack[-2]
        why = reason or f"rollback from version {current}"
        return self.store.models.set_alias(
            name, alias, target, reason=why, who=self.who, now=time.time(), kind="rollback"
        )

    def register_if_better(
        self,
        name: str,
        model: Any,
        *,
        metric: str,
        higher_is_better: bool = True,
        min_delta: float = 0.0,
        eval_data: Any = None,
        alias: str = "champion",
        metrics: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        allow_different_eval: bool = False,
        description: str | None = None,
        format: str | None = None,
    ) -> Decision:
        what = f"register_if_better('{name}')"
        check_name(name)
        check_alias(alias)
        values = _metrics(what, metrics)
        if metric not in values:
            raise PhloemError(
                f"{what}: metric '{metric}' is not in metrics= "
                f"({', '.join(values) or 'none given'}); pass metrics={{'{metric}': value, ...}}",
                model=name,
            )
        min_delta = _number(what, "min_delta", min_delta)
        if min_delta < 0:
            raise PhloemError(f"{what}: min_delta must not be negative ({min_delta})")
        if eval_data is None and not allow_different_eval:
            raise EvalDataMismatch(
                f"{what}: pass eval_data= (the data '{metric}' was measured on) so the "
                "candidate is compared with the champion on the same data, or "
                "allow_different_eval=True to compare anyway",
                model=name,
            )
        params_, tags_ = _mapping(what, "params", params), _mapping(what, "tags", tags)
        chosen = choose_format(model, format)
        evaluation = self.eval_artifact(eval_data)
        eval_digest = evaluation[0] if evaluation else None
        value = values[metric]

        champion_version = self.store.models.aliases(name).get(alias)
        if champion_version is None:
            decision = Decision(
                name, True, f"no '{alias}' yet: the first candidate is promoted", metric,
                value, alias, eval_digest=eval_digest,
            )
        else:
            champ = self.store.models.version(name, champion_version)
            if metric not in champ.metrics:
                raise PhloemError(
                    f"{what}: the {alias} (version {champ.version}) has no metric '{metric}' "
                    f"(it has {', '.join(champ.metrics) or 'none'}); compare on a metric "
                    "both have",
                    model=name,
                )
            different = champ.eval_digest is None or champ.eval_digest != eval_digest
            if different and not allow_different_eval:
                raise EvalDataMismatch(
                    f"{what}: the {alias} (version {champ.version}) was evaluated on data "
                    f"{_short(champ.eval_digest)}, the candidate on {_short(eval_digest)}; "
                    f"'{metric}' values from different evaluation sets do not compare. "
                    "Evaluate both on the same data, or pass allow_different_eval=True",
                    model=name,
                )
            champion_value = champ.metrics[metric]
            better, delta, why = judge(
                value, champion_value, higher_is_better=higher_is_better, min_delta=min_delta
            )
            reason = (
                f"{metric} {value:.6g} vs {alias} version {champ.version}'s "
                f"{champion_value:.6g}: {why}"
            )
            if different:
                reason += " (on different evaluation data, allowed)"
            decision = Decision(
                name, better, reason, metric, value, alias, None, champ.version,
                champion_value, delta, eval_digest, different,
            )
        if decision.promoted:
            version = self._register(
                name, model, chosen, values, params_, tags_, evaluation, description
            )
            decision = _with_version(decision, version)
            self.set_alias(name, version, alias, reason=f"register_if_better: {decision.reason}")
        self._record_decision(decision)
        return decision

    def _record_decision(self, decision: Decision) -> None:
        text = json.dumps(_jsonable(decision.to_dict()))
        if self.attempt is None:
            self.store.models.record_decision(decision.name, text, time.time())
            return
        record(ModelDecided(decision.name, text, time.time()), what="register_if_better()")
        self.attempt.log.info(
            "model %s: %s (%s)",
            decision.name,
            "promoted" if decision.promoted else "kept the champion",
            decision.reason,
        )

    # -- reading ----------------------------------------------------------------------------------

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        """The version ``ref`` names (a usable one): ``fraud``, ``fraud:3``, ``fraud@prod``."""
        r = parse(ref)
        models = self.store.models
        if r.version is not None:
            found = models.version(r.name, r.version)
            if not found.ready and not self._mine(found):
                return models.version(r.name, r.version, ready=True)  # raises
            return found
        if r.alias is not None:
            version = models.aliases(r.name).get(r.alias)
            if version is None:
                raise self._no_alias(r.name, r.alias)
            return models.version(r.name, version, ready=True)
        return models.latest(r.name)

    def load(self, ref: str | ModelRef) -> Any:
        v = self.resolve(ref)
        a = v.artifact
        stored = ArtifactRef(a.digest, a.serializer, a.type_name, a.size, a.key)
        model = load_model(stored, self.artifacts)
        if self.attempt is not None and self.attempt.reads is not None:
            self.attempt.reads.append(a.digest)  # an input of the task, in its lineage
        return model

    def _no_alias(self, name: str, alias: str) -> ModelNotFound:
        aliases = self.store.models.aliases(name)
        if not aliases:
            self.store.models.latest(name)  # an unknown model says so (listing the models)
        shown = ", ".join(f"{a} -> {v}" for a, v in aliases.items()) or "none"
        return ModelNotFound(
            f"model '{name}' has no alias '{alias}' (aliases: {shown}); set it with "
            f"phloem.models.set_alias('{name}', VERSION, '{alias}') or `phloem models promote "
            f"{name} VERSION --alias {alias}`",
            model=name,
        )


def _short(digest: str | None) -> str:
    return "(none recorded)" if digest is None else digest[:12]


def _with_version(d: Decision, version: int) -> Decision:
    from dataclasses import replace

    return replace(d, version=version)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
    }


__all__ = ["FORMATS", "Registry", "attempt_label", "choose_format", "user"]

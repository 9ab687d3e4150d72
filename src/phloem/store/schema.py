"""Tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create and evolve them.

Times on hot rows are epoch seconds (float) so writes stay cheap and identical on SQLite and
PostgreSQL; logical dates are canonical ISO-8601 UTC strings so they sort and compare as text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("pipeline", String(250), nullable=False),
    Column("state", String(20), nullable=False),
    Column("logical_date", String(40), nullable=False),
    Column("data_interval_start", String(40)),
    Column("data_interval_end", String(40)),
    Column("params", Text, nullable=False, default="{}"),
    Column("run_type", String(20), nullable=False, default="manual"),
    Column("source", Text),
    Column("code_hash", String(64)),
    Column("idempotency_key", String(250)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("owner", String(120)),  # the scheduler driving it (None: nobody / phloem run)
    Column("lease_expires_at", Float),
    Column("batch", String(80)),  # runs made together (a backfill), limited together
    Column("batch_limit", Integer),  # at most this many of the batch run at once
    Column("triggered_by", String(320)),  # "RUN_ID/TASK_ID" of the phloem.trigger call
    UniqueConstraint("pipeline", "logical_date", name="uq_runs_pipeline_logical_date"),
    UniqueConstraint("pipeline", "idempotency_key", name="uq_runs_pipeline_idempotency_key"),
    # listings, newest first (store/listing.py): all runs, or by pipeline, state or source
    Index("ix_runs_created", "created_at", "run_id"),
    Index("ix_runs_pipeline_created", "pipeline", "created_at"),
    Index("ix_runs_state_created", "state", "created_at"),
    Index("ix_runs_type_created", "run_type", "created_at"),
    Index("ix_runs_logical_date", "logical_date"),
)

task_instances = Table(
    "task_instances",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("state", String(20), nullable=False),
    Column("try_number", Integer, nullable=False, default=0),
    Column("retry_base", Integer, nullable=False, default=0),
    Column("next_try_at", Float),
    Column("queued_at", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("first_started_at", Float),
    Column("map_length", Integer),
    Column("follow", Text),
    Column("output", Text),
    Column("error", Text),
    Column("pool", String(250), nullable=False, default="default"),
    Column("pool_slots", Integer, nullable=False, default=1),
    Index("ix_ti_state", "state"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("try_number", Integer, primary_key=True),
    Column("state", String(20), nullable=False),
    Column("queued_at", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("heartbeat_at", Float),
    Column("worker", String(250)),
    Column("error", Text),
    Column("cpu_seconds", Float),  # what the attempt cost, where the executor measured it
    Column("peak_rss", BigInteger),  # bytes
    Column("memory_limit", BigInteger),  # bytes the executor allowed it (None: no limit)
    Column("gpu_seconds", Float),  # GPUs reserved for it (on Ray) times its wall time
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("task_id", String(250)),
    Column("map_index", Integer),
    Column("try_number", Integer),
    Column("old_state", String(20)),
    Column("new_state", String(20), nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text),
    Index("ix_events_run", "run_id", "id"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("serializer", String(40), nullable=False),
    Column("type_name", String(250), nullable=False),
    Column("size", Integer, nullable=False),
    Column("key", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

artifact_uses = Table(
    "artifact_uses",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("role", String(10), primary_key=True),  # "output" | "input"
    Column("try_number", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_artifact_uses_run", "run_id"),
    Index("ix_artifact_uses_digest_role", "digest", "role"),
)

output_metadata = Table(
    "output_metadata",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("try_number", Integer, primary_key=True),  # the attempt that succeeded with it
    # where in the output: a JSON list of keys ("[]" is the whole output, '["model"]' a value)
    Column("path", String(1000), primary_key=True),
    Column("digest", String(64)),  # the artifact holding the value (None: kept inline)
    Column("metadata", Text, nullable=False),  # JSON object
    Column("at", Float, nullable=False),
    Index("ix_output_metadata_digest", "digest"),
)

pools = Table(
    "pools",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("slots", Integer, nullable=False),
    Column("description", Text),
)

pipelines = Table(
    "pipelines",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("file", Text, nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("schedule", String(250)),
    Column("timezone", String(64), nullable=False, default="UTC"),
    Column("start_date", String(40)),
    Column("catchup", Integer, nullable=False, default=0),
    Column("max_active_runs", Integer, nullable=False, default=16),
    Column("assets", Text),  # JSON list of asset names it is scheduled on
    Column("paused", Integer, nullable=False, default=0),
    Column("active", Integer, nullable=False, default=1),  # its file still defines it
    Column("last_parsed_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("owner", String(250)),
    Column("tags", Text),  # JSON list
    Column("description", Text),
)

pipeline_versions = Table(
    "pipeline_versions",
    metadata,
    Column("pipeline", String(250), primary_key=True),
    Column("code_hash", String(64), primary_key=True),
    Column("file", Text, nullable=False),
    Column("first_seen_at", Float, nullable=False),
)

import_errors = Table(
    "import_errors",
    metadata,
    Column("file", String(1000), primary_key=True),
    Column("error", Text, nullable=False),
    Column("at", Float, nullable=False),
)

variables = Table(
    "variables",
    metadata,
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
    Column("description", Text),
    Column("updated_at", Float, nullable=False),
)

connections = Table(
    "connections",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("secret", Text, nullable=False),  # the URI, encrypted
    Column("updated_at", Float, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("holder", String(120), nullable=False),
    Column("expires_at", Float, nullable=False),
)

asset_events = Table(
    "asset_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset", String(500), nullable=False),
    Column("run_id", String(64)),
    Column("task_id", String(250)),
    Column("at", Float, nullable=False),
    Column("metadata", Text),  # JSON, from phloem.emit(..., metadata=...)
    Index("ix_asset_events_asset", "asset", "id"),
)

asset_watermarks = Table(
    "asset_watermarks",
    metadata,
    Column("pipeline", String(250), primary_key=True),
    Column("asset", String(500), primary_key=True),
    Column("last_event_id", Integer, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Float),  # NULL: not a number (NaN)
    Column("step", Integer),
    Column("at", Float, nullable=False),
    Index("ix_metrics_run_key", "run_id", "key"),
)

logged_params = Table(
    "logged_params",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("try_number", Integer, primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

# -- accounts of the server (users, API tokens, browser sessions, failed logins) ----------------

users = Table(
    "users",
    metadata,
    Column("name", String(120), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("password_hash", Text, nullable=False),  # argon2id
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("disabled_at", Float),  # set: the user may not log in, nor use a token
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("name", String(120), primary_key=True),
    Column("username", String(120), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 of the token
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the cookie's secret
    Column("username", String(120), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_sessions_user", "username"),
)

login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(300), nullable=False),  # "user:NAME" or "addr:IP"
    Column("at", Float, nullable=False),
    Index("ix_login_failures_scope", "scope", "at"),
)

cache_entries = Table(
    "cache_entries",
    metadata,
    # one entry per key: two runs computing the same key at once keep the first one's entry
    Column("key", String(64), primary_key=True),
    Column("pipeline", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("map_index", Integer, nullable=False),
    Column("output", Text),
    Column("map_length", Integer),
    Column("follow", Text),  # JSON list, for a branch
    Column("parts", Text, nullable=False),  # JSON: what the key was made of
    Column("created_at", Float, nullable=False),
    Index("ix_cache_entries_task", "pipeline", "task_id", "created_at"),
)

cache_checks = Table(
    "cache_checks",
    metadata,
    # what the cache said about one task instance, for `phloem cache explain`
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("pipeline", String(250), nullable=False),
    Column("key", String(64)),
    Column("outcome", String(20), nullable=False),  # hit | miss | refresh | uncacheable
    Column("reason", Text),
    Column("parts", Text),
    Column("source_run", String(64)),  # a hit: the run whose output it reused
    Column("at", Float, nullable=False),
)

#: incremental processing: the last value a task committed with ``wm.advance`` (typed text)
watermarks = Table(
    "watermarks",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("kind", String(16), nullable=False),  # datetime | date | int | float | str
    Column("value", Text, nullable=False),
    Column("version", Integer, nullable=False),  # +1 on every change (compare-and-set)
    Column("updated_at", Float, nullable=False),
    Column("run_id", String(64)),
    Column("task_id", String(250)),
)

#: every change of a watermark, and every advance that was not applied, never rewritten
watermark_history = Table(
    "watermark_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False),
    Column("kind", String(16)),
    Column("value", Text),
    Column("previous", Text),
    Column("outcome", String(16), nullable=False),  # advanced|forced|set|reset|kept|dropped
    Column("note", Text),
    Column("run_id", String(64)),
    Column("task_id", String(250)),
    Column("at", Float, nullable=False),
    Index("ix_watermark_history_name", "name", "id"),
)

# -- the model registry (phloem.models) ---------------------------------------------------------

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("version", Integer, primary_key=True),  # unique per name: concurrent registers differ
    Column("status", String(12), nullable=False),  # "pending" (its attempt runs) | "ready"
    Column("digest", String(64), nullable=False),  # the model's artifact
    Column("metrics", Text, nullable=False),  # JSON
    Column("params", Text, nullable=False),  # JSON
    Column("tags", Text, nullable=False),  # JSON
    Column("eval_digest", String(64)),  # content hash of the evaluation data
    Column("description", Text),
    Column("run_id", String(64)),  # the attempt that registered it (None: outside a task)
    Column("task_id", String(250)),
    Column("map_index", Integer),
    Column("try_number", Integer),
    Column("registered_by", String(500), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ready_at", Float),
    Index("ix_model_versions_attempt", "run_id", "task_id", "map_index"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("alias", String(250), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("moved_at", Float, nullable=False),
)

#: every alias move, appended and never rewritten
model_alias_moves = Table(
    "model_alias_moves",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False),
    Column("alias", String(250), nullable=False),
    Column("version", Integer, nullable=False),
    Column("previous", Integer),
    Column("kind", String(12), nullable=False),  # "set" | "rollback"
    Column("at", Float, nullable=False),
    Column("who", String(500), nullable=False),
    Column("reason", Text),
    Column("run_id", String(64)),
    Column("task_id", String(250)),
    Index("ix_model_alias_moves_name", "name", "alias", "id"),
)

#: what ``register_if_better`` decided, and why
model_decisions = Table(
    "model_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(250), nullable=False),
    Column("decision", Text, nullable=False),  # JSON
    Column("at", Float, nullable=False),
    Column("run_id", String(64)),
    Column("task_id", String(250)),
    Index("ix_model_decisions_name", "name", "id"),
)

breakers = Table(
    "breakers",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("state", String(12), nullable=False),  # closed | open | half_open
    Column("failures", Text, nullable=False),  # JSON list of recent failure times
    Column("opened_at", Float),
    Column("probe_until", Float),  # half open: the probe's lease
    Column("last_error", Text),
    Column("updated_at", Float, nullable=False),
)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(250), nullable=False),
    Column("kind", String(20), nullable=False),  # failure | retry | success | duration ...
    Column("options", Text, nullable=False),  # JSON: factor, last, after, metric, ...
    Column("channels", Text, nullable=False),  # JSON list of [kind, target]
    Column("created_at", Float, nullable=False),
    Index("ix_alert_rules_pipeline", "pipeline"),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule_id", String(80), nullable=False),
    Column("pipeline", String(250), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("subject", String(400), nullable=False),  # "" for the run; "task[map]#try" else
    Column("channel", Integer, nullable=False),  # which of the rule's channels
    Column("kind", String(20), nullable=False),  # webhook | email | call
    Column("target", Text, nullable=False),
    Column("rule", Text, nullable=False),  # the rule in words
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("payload", Text, nullable=False),  # JSON fields for webhooks and callables
    Column("state", String(20), nullable=False),  # pending | sent | failed
    Column("tries", Integer, nullable=False, default=0),
    Column("next_try_at", Float, nullable=False),
    Column("claimed_by", String(120)),
    Column("claim_expires_at", Float),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    # one delivery per (rule, run, subject, channel), whoever records it and however often
    UniqueConstraint("rule_id", "run_id", "subject", "channel", name="uq_alert_deliveries_once"),
    Index("ix_alert_deliveries_due", "state", "next_try_at"),
    Index("ix_alert_deliveries_pipeline", "pipeline", "id"),
)

process_stats = Table(
    "process_stats",
    metadata,
    Column("holder", String(120), primary_key=True),  # the scheduler's id
    Column("role", String(20), nullable=False),
    Column("loop", Text, nullable=False),  # JSON: cumulative [bound, count] pairs, sum, count
    Column("waited_out", Integer, nullable=False),  # database errors waited out
    Column("updated_at", Float, nullable=False),
)

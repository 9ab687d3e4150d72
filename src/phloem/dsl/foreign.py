"""Option names people bring from other orchestrators, and what phloem offers instead.

Someone who writes ``@task(execution_timeout=...)`` knows what they want; a fuzzy match
would steer them somewhere else, so these names get an answer of their own: the phloem option
for the same feature, or a plain statement that phloem does not have it and what comes closest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Foreign:
    origin: str  # where the name comes from
    same: str | None  # the phloem option for the same feature, if there is one
    advice: str = ""  # how to write it in phloem, or what comes closest


TASK: dict[str, Foreign] = {
    "execution_timeout": Foreign("Airflow", "timeout", "seconds or a timedelta"),
    "timeout_seconds": Foreign("Prefect", "timeout", "seconds or a timedelta"),
    "time_limit": Foreign("Celery", "timeout", "seconds or a timedelta"),
    "retry_delay_seconds": Foreign("Prefect", "retry_delay", "seconds or a timedelta"),
    "retry_exponential_backoff": Foreign(
        "Airflow", "retry_backoff", "a multiplier: retry_backoff=2.0 doubles the delay each retry"
    ),
    "retry_jitter_factor": Foreign("Prefect", "retry_jitter", "a fraction between 0 and 1"),
    "max_retries": Foreign("Celery", "retries", "the number of attempts after the first"),
    "retry_policy": Foreign(
        "Dagster", None, "write retries=N, retry_delay=..., retry_backoff=... on the task"
    ),
    "priority_weight": Foreign("Airflow", "priority", "higher runs first among ready tasks"),
    "task_id": Foreign("Airflow", "name", "the task's name, the function's name by default"),
    "task_run_name": Foreign("Prefect", "name", "the task's name, the function's name by default"),
    "on_failure_callback": Foreign("Airflow", "on_failure", "a function called on failure"),
    "on_success_callback": Foreign("Airflow", "on_success", "a function called on success"),
    "on_retry_callback": Foreign("Airflow", "on_retry", "a function called before a retry"),
    "op_tags": Foreign("Dagster", "tags", "a list of strings"),
    "executor_config": Foreign("Airflow", "resources", 'e.g. {"cpus": 2, "memory": "4GiB"}'),
    "depends_on_past": Foreign(
        "Airflow",
        None,
        "a run never waits on the previous run's tasks; @pipeline(max_active_runs=1) runs "
        "one run of the pipeline at a time",
    ),
    "wait_for_downstream": Foreign(
        "Airflow",
        None,
        "a run never waits on the previous run's tasks; @pipeline(max_active_runs=1) runs "
        "one run of the pipeline at a time",
    ),
    "queue": Foreign(
        "Airflow and Celery", None, "work is placed by pool=... and resources=... instead"
    ),
    "max_active_tis_per_dag": Foreign(
        "Airflow", None, "limit how many run at once with a pool (pool=..., pool_slots=...)"
    ),
    "weight_rule": Foreign("Airflow", None, "priority=... is a plain number, higher first"),
    "sla": Foreign("Airflow", None, "use timeout=... to bound a task's duration"),
    "email": Foreign("Airflow", None, "send mail from an on_failure=... callback"),
    "email_on_failure": Foreign("Airflow", None, "send mail from an on_failure=... callback"),
    "email_on_retry": Foreign("Airflow", None, "send mail from an on_retry=... callback"),
    "cache_key_fn": Foreign("Prefect", None, "task results are not cached by a key yet"),
    "cache_expiration": Foreign("Prefect", None, "task results are not cached by a key yet"),
    "cache_policy": Foreign("Prefect", None, "task results are not cached by a key yet"),
    "log_prints": Foreign("Prefect", None, "print output is always captured in the attempt log"),
    "persist_result": Foreign("Prefect", None, "a task's return value is always stored"),
    "do_xcom_push": Foreign("Airflow", None, "a task's return value is always stored"),
}

PIPELINE: dict[str, Foreign] = {
    "schedule_interval": Foreign("Airflow", "schedule", "cron text, @daily, a timedelta..."),
    "cron": Foreign("Prefect", "schedule", "cron text, @daily, a timedelta..."),
    "interval": Foreign("Prefect", "schedule", "a timedelta, e.g. schedule=timedelta(hours=1)"),
    "dag_id": Foreign("Airflow", "name", "the function's name by default"),
    "flow_name": Foreign("Prefect", "name", "the function's name by default"),
    "default_args": Foreign(
        "Airflow", "default_task_options", "options given to every task that does not set them"
    ),
    "concurrency": Foreign("Airflow", "max_active_tasks", "tasks of one run running at once"),
    "doc_md": Foreign("Airflow", "description", "the function's docstring by default"),
    "dagrun_timeout": Foreign("Airflow", "timeout", "seconds or a timedelta, for the whole run"),
    "end_date": Foreign("Airflow", None, "pause the pipeline with `phloem pipelines pause`"),
    "is_paused_upon_creation": Foreign(
        "Airflow", None, "pause the pipeline with `phloem pipelines pause`"
    ),
    "on_failure_callback": Foreign(
        "Airflow", "on_failure", "a function called once when a run fails"
    ),
    "on_success_callback": Foreign(
        "Airflow", "on_success", "a function called once when a run succeeds"
    ),
    "version": Foreign("Prefect", None, "each run records the hash of the pipeline's code"),
    "task_runner": Foreign("Prefect", None, "choose where tasks run with `phloem run --executor`"),
}


def foreign_name(name: str, scope: str) -> Foreign | None:
    """What phloem says about ``name`` given to a ``scope`` ("task" or "pipeline")."""
    return (PIPELINE if scope == "pipeline" else TASK).get(name)

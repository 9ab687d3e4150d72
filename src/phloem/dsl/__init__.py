"""What authors write: tasks, pipelines, sensors and groups."""

from phloem.dsl.assets import Asset
from phloem.dsl.groups import Group, group
from phloem.dsl.options import Resources, TaskOptions
from phloem.dsl.params import resolve_params, typed_params
from phloem.dsl.pipeline import Pipeline, pipeline
from phloem.dsl.refs import ParamRef, TaskRef
from phloem.dsl.spec import ParamSpec, PipelineSpec, TaskSpec
from phloem.dsl.task import Task, sensor, task

__all__ = [
    "Asset",
    "Group",
    "ParamRef",
    "ParamSpec",
    "Pipeline",
    "PipelineSpec",
    "Resources",
    "Task",
    "TaskOptions",
    "TaskRef",
    "TaskSpec",
    "group",
    "pipeline",
    "resolve_params",
    "typed_params",
    "sensor",
    "task",
]

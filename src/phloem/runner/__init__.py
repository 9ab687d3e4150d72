"""Executes one attempt wherever it is sent: inputs in, function called, output stored."""

from phloem.runner.attempt import Attempt, Out, OutList, Result
from phloem.runner.execute import SkipTask, run_attempt
from phloem.runner.logs import log_path

__all__ = [
    "Attempt",
    "Out",
    "OutList",
    "Result",
    "SkipTask",
    "log_path",
    "run_attempt",
]

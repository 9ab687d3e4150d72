"""Loading pipeline files: names, errors, and objects their tasks pickle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import phloem
from phloem.loading import load_pipeline, module_name

MODEL = textwrap.dedent(
    """
    from phloem import pipeline, task

    class Threshold:
        def __init__(self, cut: float) -> None:
            self.cut = cut

        def predict(self, x: float) -> bool:
            return x > self.cut

    @task
    def fit() -> Threshold:
        return Threshold(0.5)

    @pipeline
    def custom_model():
        fit()
    """
)


def test_objects_of_classes_defined_in_a_pipeline_file_load_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "thresholds.py").write_text(MODEL)
    r = phloem.run(str(tmp_path / "thresholds.py"), store="memory", home=tmp_path / "h")
    assert r.succeeded
    ref = r.tasks[("fit", -1)].output
    from phloem.artifacts.codec import from_stored_json

    path = r.app.artifacts.location(from_stored_json(ref))  # type: ignore[arg-type]
    # a plain Python process with the pipeline folder importable can unpickle the model
    code = (
        f"import pickle, sys; sys.path.insert(0, {str(tmp_path)!r}); "
        f"m = pickle.load(open({path!r}, 'rb')); print(type(m).__module__, m.predict(0.7))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["thresholds", "True"]


def test_a_file_named_like_an_installed_module_gets_a_private_name(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(MODEL)
    assert module_name(tmp_path / "json.py").startswith("phloem_user_")
    assert load_pipeline(str(tmp_path / "json.py")).name == "custom_model"


def test_missing_file_and_unknown_name_are_clear(tmp_path: Path) -> None:
    with pytest.raises(phloem.PipelineNotFound, match="no such pipeline file"):
        load_pipeline(str(tmp_path / "nope.py"))
    (tmp_path / "two.py").write_text(MODEL + "\n@pipeline\ndef other():\n    fit()\n")
    with pytest.raises(phloem.PipelineNotFound, match=r"several pipelines \(custom_model, other\)"):
        load_pipeline(str(tmp_path / "two.py"))
    with pytest.raises(phloem.PipelineNotFound, match="has no pipeline 'third'"):
        load_pipeline(f"{tmp_path / 'two.py'}:third")


def test_an_import_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken_pipe.py").write_text("import definitely_not_a_module\n")
    with pytest.raises(phloem.DefinitionError, match=r"broken_pipe\.py: importing the file failed"):
        load_pipeline(str(tmp_path / "broken_pipe.py"))
